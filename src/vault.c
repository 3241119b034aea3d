/*
** vault.c: secrets shared by number across the Lua VMs of one process.
**
** nginx runs the SDK's transfers in worker threads, each with a Lua VM of
** its own, and ngx.run_worker_thread passes only plain values. A key's
** secret must not become one, so the requesting VM puts the key in the
** vault and sends its number; the thread's transfer reads the bytes from
** the vault in C. Entries are copies in pages of their own, like keys,
** and are wiped when their last holder drops them. The vault is the one
** piece of process-wide state in bearer, behind one mutex.
*/
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bearer.h"

typedef struct vault_entry {
  unsigned char *bytes;     /* own pages; NULL: free slot */
  size_t len, map_len;
  long holders;             /* share_key holders + transfers in progress */
  size_t id;                /* the id it was put under */
} vault_entry;

/* An id is never given twice: a request queued with an id whose entry was
** dropped (its client's key changed) must find nothing, not the key of
** whoever got the slot next. id = generation * VAULT_SLOTS + slot + 1, and
** stays below 2^53 so it survives LuaJIT's doubles. */
#define VAULT_SLOTS 65536
#define VAULT_MAX_GENERATION ((size_t)1 << 36)

static pthread_mutex_t vault_lock = PTHREAD_MUTEX_INITIALIZER;
static vault_entry *vault_entries;   /* grows, never shrinks */
static size_t vault_size;
static size_t vault_generation;

/* The entry id names while it is alive, else NULL. Caller holds the lock. */
static vault_entry *vault_find_locked(size_t id) {
  if (id == 0) return NULL;
  size_t slot = (id - 1) % VAULT_SLOTS;
  if (slot >= vault_size) return NULL;
  vault_entry *e = &vault_entries[slot];
  return (e->bytes != NULL && e->id == id) ? e : NULL;
}

static void vault_wipe(vault_entry *e) {
  bearer_cleanse(e->bytes, e->map_len);
  munlock(e->bytes, e->map_len);
  munmap(e->bytes, e->map_len);
  e->bytes = NULL;
  e->len = e->map_len = 0;
}

/* When the library is unloaded (lua_close, dlclose, exit), whatever is
** left is wiped and the table freed: no secret outlives bearer. */
__attribute__((destructor)) static void vault_unload(void) {
  pthread_mutex_lock(&vault_lock);
  for (size_t i = 0; i < vault_size; i++)
    if (vault_entries[i].bytes != NULL) vault_wipe(&vault_entries[i]);
  free(vault_entries);
  vault_entries = NULL;
  vault_size = 0;
  pthread_mutex_unlock(&vault_lock);
}

/* Drops one holder of id; the last one wipes. Caller holds the lock. */
static void vault_release_locked(size_t id) {
  vault_entry *e = vault_find_locked(id);
  if (e != NULL && --e->holders == 0) vault_wipe(e);
}

/* A copy of the bytes of key as a new entry; its id (1-based), or 0. */
BEARER_INTERNAL size_t bearer_vault_put(const bearer_key *k) {
  long page = sysconf(_SC_PAGESIZE);
  size_t map_len = ((k->len + (size_t)page) / (size_t)page) * (size_t)page;
  void *p = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return 0;
#ifdef MADV_DONTDUMP
  madvise(p, map_len, MADV_DONTDUMP);
#endif
  mlock(p, map_len);
  memcpy(p, k->secret, k->len);
  pthread_mutex_lock(&vault_lock);
  size_t slot = vault_size;
  for (size_t i = 0; i < vault_size; i++)
    if (vault_entries[i].bytes == NULL) {
      slot = i;
      break;
    }
  if (slot == vault_size && vault_size < VAULT_SLOTS) {
    vault_entry *grown = realloc(vault_entries, (vault_size + 16) * sizeof *grown);
    if (grown != NULL) {
      memset(grown + vault_size, 0, 16 * sizeof *grown);
      vault_entries = grown;
      vault_size += 16;
    }
  }
  size_t id = 0;
  if (slot < vault_size && vault_generation < VAULT_MAX_GENERATION) {
    vault_entry *e = &vault_entries[slot];
    id = ++vault_generation * VAULT_SLOTS + slot + 1;
    e->bytes = p;
    e->len = k->len;
    e->map_len = map_len;
    e->holders = 1;
    e->id = id;
  }
  pthread_mutex_unlock(&vault_lock);
  if (id == 0) {
    bearer_cleanse(p, map_len);
    munmap(p, map_len);
  }
  return id;
}

BEARER_INTERNAL int bearer_vault_acquire(size_t id, bearer_secret *out) {
  int ok = 0;
  pthread_mutex_lock(&vault_lock);
  vault_entry *e = vault_find_locked(id);
  if (e != NULL) {
    e->holders++;
    out->bytes = e->bytes;
    out->len = e->len;
    ok = 1;
  }
  pthread_mutex_unlock(&vault_lock);
  return ok;
}

BEARER_INTERNAL void bearer_vault_release(size_t id) {
  pthread_mutex_lock(&vault_lock);
  vault_release_locked(id);
  pthread_mutex_unlock(&vault_lock);
}


