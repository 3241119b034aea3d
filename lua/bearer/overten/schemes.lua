--- bearer.overten.schemes: the key schemes of the Overten API (bearer.key
-- hands the rule to C). Data of their own, apart from the endpoints, so a
-- key of these schemes loads nothing else (bearer.key loads this on first
-- use); bearer.overten.endpoints re-exports it as `schemes`.
return {
  { name = "overten", prefix = "sk_live_", alphabet = "alnum", length = 28,
    expect = "'sk_live_' followed by exactly 28 letters or digits" },
  { name = "webhook", prefix = "whsec_", alphabet = "b64token",
    expect = "'whsec_' followed by token characters" },
  -- the admin endpoints' Firebase ID token: a JWT whose exp the client reads
  { name = "firebase", prefix = "eyJ", jwt = true },
}
