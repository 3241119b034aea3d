--- bearer.optiverse.schemes: the key scheme of the Optiverse API (bearer.key
-- hands the rule to C). Data of its own, apart from the endpoints, so a key
-- of this scheme loads nothing else (bearer.key loads this on first use);
-- bearer.optiverse.endpoints re-exports it as `schemes`.
return {
  { name = "optiverse", prefix = "optiuser_v1_", alphabet = "urlsafe",
    expect = "'optiuser_v1_' followed by URL-safe characters" },
}
