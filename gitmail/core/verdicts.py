"""The verdicts a reader gives a message commit (docs/protocol.md §7, "Verification"), and the
version of the rules that give them.

Light on purpose (no pygit2, no pydantic): the cache compares :data:`RULES` with the version
it recorded on every command, and re-checks what it recorded when they differ
(:func:`gitmail.core.cache.ingest`).
"""

from __future__ import annotations

GOOD = "good"
UNSIGNED = "unsigned"
BAD_SIGNATURE = "bad-signature"
UNKNOWN_SENDER = "unknown-sender"
WRONG_SIGNER = "wrong-signer"
MALFORMED = "malformed"
MISFILED = "misfiled"
RETIRED_KEY = "retired-key"  # signed by a key retired (or revoked) before the message was sent
# Every verdict but good, in the order of §7's checks (docs and labels are made from it).
FAILED = (UNSIGNED, BAD_SIGNATURE, UNKNOWN_SENDER, WRONG_SIGNER, RETIRED_KEY, MISFILED, MALFORMED)

# The version of the rules of gitmail.core.store.check_message. Bump it with any change that can
# give a commit another verdict: every cache then checks its recorded messages again at its next
# ingest, so a message an older gitmail accepted is not shown as genuine for ever.
#   1: every cache written before this number was recorded (none records one).
#   2: signatures split and read as `git verify-commit` reads them (§7, "What a reader accepts");
#      message headers read from the raw commit as git shows them (§6).
#   3: message.json holds every required key, each of its JSON type (§4); protocol types'
#      recipients and request ids (§5); attachment oids; the envelope's path and readers (§9);
#      the tree holds what the message describes and nothing else (§6).
#   4: each attachment's file is the LFS pointer, or a blob of the size, its entry declares (§6).
#   5: each attachment's media_type is type/subtype (RFC 6838), in clear and sealed (§4, §9).
#   6: an encrypted message's readers hold every member its to names, and its age header is one
#      those readers need (§9, "Verification before decryption"); a body is held to the widest
#      body_limit of the directory's history (§13).
#   7: a protocol payload's values have their JSON types exactly (§5; {"approve": "no"} was read as
#      true); a retired key's mail is below its recorded tip as git reads the parents (§7).
RULES = 7
