/*
 * bench/anchor.c: the C + libcurl anchors `make bench` pairs bearer against, what the
 * issue 9 figures were measured against (bench/README: the harness's bench_curl, trimmed).
 *
 *   anchor verify N      N x GET /api/v1/verify on ONE reused easy handle (keep-alive)
 *   anchor pages P       P passes over the 100 list-records pages, one reused handle; raw:
 *                        only the page's tail is searched for "hasMore" (no JSON decode)
 *   anchor multi N R     R rounds of N GET /api/v1/slow at once on one curl_multi handle
 *
 * Env BENCH_URL, BENCH_TOKEN. Prints one line
 *   RESULT n=<units> secs=<loop seconds> us=<microseconds per unit> rss_kb=<VmHWM> errors=<k>
 * (a unit is a request, or a round for multi) and exits 1 when any request failed.
 */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct { char *p; size_t len, cap; } anchor_buf;

static size_t anchor_write(char *ptr, size_t size, size_t nmemb, void *ud) {
  anchor_buf *b = ud;
  size_t n = size * nmemb;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return 0;
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, ptr, n);
  b->len += n;
  b->p[b->len] = 0;
  return n;
}

static double anchor_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static long anchor_vmhwm_kb(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kb = -1;
  if (!f) return -1;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "VmHWM:", 6) == 0) { kb = strtol(line + 6, NULL, 10); break; }
  fclose(f);
  return kb;
}

static struct curl_slist *anchor_headers;

static CURL *anchor_easy(anchor_buf *b) {
  CURL *h = curl_easy_init();
  if (!h) { fprintf(stderr, "curl_easy_init failed\n"); exit(2); }
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, anchor_headers);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, anchor_write);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, b);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
  curl_easy_setopt(h, CURLOPT_TIMEOUT, 30L);
  return h;
}

/* one transfer on h; 0 on HTTP 200 */
static int anchor_get(CURL *h, anchor_buf *b) {
  long code = 0;
  b->len = 0;
  CURLcode rc = curl_easy_perform(h);
  if (rc != CURLE_OK) { fprintf(stderr, "curl: %s\n", curl_easy_strerror(rc)); return 1; }
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
  if (code != 200) { fprintf(stderr, "HTTP %ld\n", code); return 1; }
  return 0;
}

/* 1 more pages, 0 last page, -1 not a page */
static int anchor_has_more(const anchor_buf *b) {
  size_t tail = b->len > 128 ? b->len - 128 : 0;
  if (b->len == 0) return -1;
  if (memmem(b->p + tail, b->len - tail, "\"hasMore\":false", 15)) return 0;
  if (memmem(b->p + tail, b->len - tail, "\"hasMore\":true", 14)) return 1;
  return -1;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s verify N | pages P | multi N ROUNDS\n", argv[0]);
    return 2;
  }
  const char *mode = argv[1], *base = getenv("BENCH_URL"), *token = getenv("BENCH_TOKEN");
  long n = atol(argv[2]), rounds = argc > 3 ? atol(argv[3]) : 1, units = 0, errors = 0;
  if (!base || !token || n <= 0 || rounds <= 0) {
    fprintf(stderr, "need BENCH_URL, BENCH_TOKEN, N > 0 and ROUNDS > 0\n");
    return 2;
  }
  curl_global_init(CURL_GLOBAL_DEFAULT);
  char auth[512], url[1024];
  snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
  anchor_headers = curl_slist_append(NULL, auth);
  anchor_headers = curl_slist_append(anchor_headers, "Accept: application/json");
  anchor_buf b = {0};
  double t0, t1;

  if (!strcmp(mode, "verify")) {
    CURL *h = anchor_easy(&b);
    snprintf(url, sizeof url, "%s/api/v1/verify", base);
    curl_easy_setopt(h, CURLOPT_URL, url);
    t0 = anchor_now();
    for (long i = 0; i < n; i++, units++)
      if (anchor_get(h, &b) || !strstr(b.p, "\"valid\":true")) errors++;
    t1 = anchor_now();
    curl_easy_cleanup(h);
  } else if (!strcmp(mode, "pages")) {
    CURL *h = anchor_easy(&b);
    t0 = anchor_now();
    for (long pass = 0; pass < n; pass++) {
      for (long offset = 0;; offset += 100) {
        snprintf(url, sizeof url, "%s/external-api/v1/list-records?limit=100&offset=%ld", base, offset);
        curl_easy_setopt(h, CURLOPT_URL, url);
        units++;
        int more = anchor_get(h, &b) ? -1 : anchor_has_more(&b);
        if (more < 0) { errors++; break; }
        if (!more) break;
      }
    }
    t1 = anchor_now();
    curl_easy_cleanup(h);
  } else if (!strcmp(mode, "multi")) {
    CURLM *m = curl_multi_init();
    CURL **hs = calloc(n, sizeof *hs);
    anchor_buf *bs = calloc(n, sizeof *bs);
    if (!hs || !bs) return 2;
    snprintf(url, sizeof url, "%s/api/v1/slow", base);
    for (long i = 0; i < n; i++) {
      hs[i] = anchor_easy(&bs[i]);
      curl_easy_setopt(hs[i], CURLOPT_URL, url);
      curl_easy_setopt(hs[i], CURLOPT_PRIVATE, (void *)&bs[i]);
    }
    t0 = anchor_now();
    for (long r = 0; r < rounds; r++, units++) {
      for (long i = 0; i < n; i++) { bs[i].len = 0; curl_multi_add_handle(m, hs[i]); }
      int running = 1;
      while (running) {
        if (curl_multi_perform(m, &running) != CURLM_OK) { errors++; break; }
        if (running) curl_multi_poll(m, NULL, 0, 1000, NULL);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left))) {
          anchor_buf *eb;
          long code = 0;
          if (msg->msg != CURLMSG_DONE) continue;
          curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&eb);
          curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &code);
          if (msg->data.result != CURLE_OK || code != 200 || !eb->p || !strstr(eb->p, "\"valid\":true"))
            errors++;
        }
      }
      for (long i = 0; i < n; i++) curl_multi_remove_handle(m, hs[i]);
    }
    t1 = anchor_now();
    for (long i = 0; i < n; i++) { curl_easy_cleanup(hs[i]); free(bs[i].p); }
    free(hs);
    free(bs);
    curl_multi_cleanup(m);
  } else {
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
  }
  printf("RESULT n=%ld secs=%.6f us=%.2f rss_kb=%ld errors=%ld\n", units, t1 - t0,
         (t1 - t0) * 1e6 / units, anchor_vmhwm_kb(), errors);
  free(b.p);
  curl_slist_free_all(anchor_headers);
  curl_global_cleanup();
  return errors ? 1 : 0;
}
