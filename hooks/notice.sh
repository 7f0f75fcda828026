# gitmail_notice: the new-mail notice of the client hooks, without Python (docs/sync.md, "The notice").
# Not a hook itself: `gitmail hooks install` copies this text into post-merge and post-checkout.
#
# $1: the git dir; $2: the hook's `git for-each-ref` listing ("<oid> <refname>" lines).
# Reads .git/gitmail/inbox-refs (which refs are this member's inbox, the senders' keys and
# author lines, the body limit; written by gitmail on every ingest) and lists the commits that
# arrived on them since the last verified tip (or the last notice). git itself checks each
# signature (`%G?`, ssh-keygen) against the allowed-signers file gitmail wrote from the verified
# directory: the signer must be the mailbox's sender, with their current key. Then the whole of
# gitmail's own check (docs/protocol.md §7) runs here for the plain messages it covers: the raw
# commit, its tree, message.json (canonical JSON, parsed in awk), the content rules, the commit
# metadata rendered from the message, the Message-ID and the ciphertext's hash (sha256sum).
# Prints the notice and returns 0, or returns 1 when only gitmail's full check can tell: a moved
# directory, a name that is not plain ASCII, a bad, unknown or retired signature, a merge or a
# rewritten mailbox, more than 10 new messages, no ssh-keygen or sha256sum, a message outside
# the plain subset or one that breaks a rule (docs/sync.md, "The notice"); and encrypted mail
# when the setting gitmail.noticeSubjects (or $GITMAIL_NOTICE_SUBJECTS) is "decrypt".
# GITMAIL_DEBUG=1 prints why it handed over.
gitmail_notice() {
  _gm_data="$1/gitmail"
  [ -r "$_gm_data/inbox-refs" ] && [ -r "$_gm_data/allowed_signers" ] || return 1
  # Message-IDs are checked with sha256sum (or shasum): without either, gitmail checks them.
  if command -v sha256sum >/dev/null 2>&1; then _GM_SHA=sha256sum
  elif command -v shasum >/dev/null 2>&1; then _GM_SHA="shasum -a 256"
  else return 1
  fi
  export _GM_SHA
  # One git config for both settings; the identity must be the one inbox-refs was written for.
  _GM_CONF=$(git config --get-regexp '^gitmail\.(user|noticesubjects)$')
  export _GM_CONF
  _gm_ranges=$(printf '%s\n' "$2" | awk -v inbox="$_gm_data/inbox-refs" -v seen="$_gm_data/hook-seen" '
    BEGIN {
      user = ENVIRON["GITMAIL_USER"]; nc = split(ENVIRON["_GM_CONF"], C, "\n")
      for (i = 1; i <= nc; i++) if (user == "" && index(C[i], "gitmail.user ") == 1) user = substr(C[i], 14)
      while ((getline l < inbox) > 0) {
        k = l; sub(/ .*/, "", k); v = substr(l, length(k) + 2)
        if (k == "member") member = v; else if (k == "self") self = v
        else if (k == "directory") dir = v; else if (k == "verified") vdir = v
        else if (k == "inbox" || k == "shared") { p = v; sub(/ .*/, "", p); pre[++np] = p; kind[np] = k }
      }
      while ((getline l < seen) > 0) { split(l, f, " "); seenoid[f[2]] = f[1] }
    }
    { oid[$2] = $1; order[++n] = $2 }
    END {
      if (dir == "" || np == 0 || user != member) { print "FULL"; exit }
      # the directory fetched is the one verified, and inbox-refs was written for it (groups)
      if (oid[dir] != oid["refs/gitmail/verified/directory"] || vdir != oid[dir]) { print "FULL"; exit }
      base = substr(dir, 1, length(dir) - length("directory"))
      for (i = 1; i <= n; i++) {
        r = order[i]; mine = 0; sender = r; sub(/.*\//, "", sender)
        # direct mail to oneself is inbox; one'"'"'s own broadcast or group message is not
        # and the ref is exactly <prefix><sender>: mail/<recipient>/<sender>, nothing deeper
        for (j = 1; j <= np; j++) if (index(r, pre[j]) == 1 && substr(r, length(pre[j]) + 1) == sender \
            && (kind[j] == "inbox" || sender != self)) mine = 1
        if (!mine) continue
        v = oid["refs/gitmail/verified/" substr(r, length(base) + 1)]; s = seenoid[r]
        if (oid[r] == v || oid[r] == s) continue
        line = r
        if (v != "") line = line " ^" v
        if (s != "" && s != v) line = line " ^" s
        print line
      }
    }') || return 1
  case $_gm_ranges in
    FULL*) return 1 ;;
    "") return 0 ;;
  esac
  # The commits to check, newest first; git checks each signature (ssh-keygen) and names the key.
  # shellcheck disable=SC2086  # ref names and oids: no blanks, no glob characters
  _gm_log=$(git -c gpg.ssh.allowedSignersFile="$_gm_data/allowed_signers" log --max-count=11 --source \
      --format='%G?%x1f%GS%x1f%GK%x1f%H%x1f%P%x1f%S%x1f%T' $_gm_ranges 2>/dev/null) || return 1
  # Stage 1 (the log): good signature by the sender's current key, at most 10, fast-forwards only.
  # It asks one `git cat-file --batch` for each commit's raw object, tree, message.json and
  # message.age; a line "FULL" instead hands the pull over to gitmail's Python.
  # Stage 2 (the objects): the whole of gitmail's check of a plain message (see below).
  # LC_ALL=C: awk sees bytes (UTF-8 is checked and counted by hand).
  printf '%s\n' "$_gm_log" | LC_ALL=C awk -F '\037' -v ranges="$_gm_ranges" -v inbox="$_gm_data/inbox-refs" '
    BEGIN {
      n = split(ranges, L, "\n")
      for (i = 1; i <= n; i++) {
        m = split(L[i], w, " "); has[w[1]] = m > 1
        for (k = 2; k <= m; k++) bases[w[1], substr(w[k], 2)] = 1
      }
      while ((getline l < inbox) > 0) if (split(l, f, "\t") == 5 && f[1] == "sender") fpr[f[2]] = f[3]
    }
    $0 == "" { next }
    {
      sender = $6; sub(/.*\//, "", sender)
      if (++seen > 10 || NF != 7 || $1 != "G" || $2 != sender || sender !~ /^[a-z0-9_][a-z0-9_-]*$/ || $5 ~ / /) { bad = 1; exit }
      if (!(sender in fpr) || $3 != fpr[sender]) { bad = 1; exit }  # only the current key: retired keys go to Python
      if ($4 !~ /^[0-9a-f]+$/ || $7 !~ /^[0-9a-f]+$/) { bad = 1; exit }
      ours[$6, $4] = 1; parent[$4] = $5; refof[$4] = $6; c = ++nc
      req = req $4 " C " c " " $6 " " $7 " " ($5 == "" ? "-" : $5) "\n" $7 " K " c "\n" \
        $4 ":message.json J " c "\n" $4 ":message.age A " c "\n"
    }
    END {
      if (bad) { print "FULL"; exit }
      for (c in parent) {  # a fast-forward: each parent is a new commit of that ref, or where it was
        p = parent[c]; r = refof[c]
        if (p == "" ? has[r] : !(((r, p) in ours) || ((r, p) in bases))) { print "FULL"; exit }
      }
      printf "%s", req
    }' | git cat-file --batch='%(objectname) %(objecttype) %(objectsize) %(rest)' 2>/dev/null \
  | LC_ALL=C awk -v inbox="$_gm_data/inbox-refs" -v tmp="$_gm_data/notice-tmp" '
    BEGIN {
      for (i = 1; i < 256; i++) ord[sprintf("%c", i)] = i
      Z = sprintf("%c", 0); Q = sprintf("%c", 39)
      subjects = ENVIRON["GITMAIL_NOTICE_SUBJECTS"]; nc = split(ENVIRON["_GM_CONF"], C, "\n")
      for (i = 1; i <= nc; i++) if (subjects == "" && index(C[i], "gitmail.noticesubjects ") == 1) subjects = substr(C[i], 24)
      while ((getline l < inbox) > 0) {
        if (split(l, f, "\t") == 5 && f[1] == "sender") { aname[f[2]] = f[4]; amail[f[2]] = f[5]; continue }
        k = l; sub(/ .*/, "", k)
        if (k == "limit") limit = substr(l, 7) + 0
        if (k == "member") me = substr(l, 8)
        if (k == "inbox" || k == "shared") { l = substr(l, length(k) + 2); p = l; sub(/ .*/, "", p); addr[p] = substr(l, length(p) + 2) }
      }
      if (limit < 1) bad = 1
      srand(); now = srand()
    }
    function debug(why) { if (ENVIRON["GITMAIL_DEBUG"] != "") printf "gitmail notice: to gitmail (%s)\n", why > "/dev/stderr" }
    function fail(why) { debug(why); bad = 1; exit }
    # -- the stream of `git cat-file --batch`: a header line, then <size> bytes and a line feed
    want > 0 {
      buf = buf $0 "\n"; got += length($0) + 1
      if (got >= want) {
        if (got != want) fail("object size")
        want = 0; object(substr(buf, 1, size))
      }
      next
    }
    $0 == "FULL missing" { fail("not a plain fast path") }
    {
      if (NF == 2 && $2 == "missing" && $1 ~ /:message\.age$/) next  # clear mail has none
      if (NF != ($4 == "C" ? 8 : 5) || $3 !~ /^[0-9]+$/ || length($3) > 9) fail("object header")
      if ($3 + 0 > 262144) fail("over 256 KiB")  # big mail: gitmail reads it faster than awk
      otype = $2; size = $3 + 0; tag = $4; i = $5; buf = ""; got = 0; want = size + 1
      if (tag == "C") {  # the rest of a commit request: ref, tree, parent
        ref[i] = $6; tree[i] = $7; par[i] = $8; n = i
      }
    }
    function object(data) {
      if (tag == "C") commit(data)
      else if (tag == "K") treeobj(data)
      else if (tag == "J") message(data)
      else if (tag == "A") { if (otype != "blob") fail("message.age"); cipher[i] = data }
      else fail("object")
    }
    # The raw commit: exactly the headers gitmail writes (tree, parent, author, committer, gpgsig),
    # the author and committer the sender directory entry, +0000 (the author time is checked
    # against the message date below); its message is compared with the rendered one.
    function commit(data,   p, head, L, nl, k, who, a, t, j) {
      who = ref[i]; sub(/.*\//, "", who)
      if (otype != "commit" || !(who in aname)) fail("commit: sender")
      p = index(data, "\n\n"); if (p == 0) fail("commit: no message")
      head = substr(data, 1, p - 1); rawmsg[i] = substr(data, p + 2)
      nl = split(head, L, "\n")
      if (L[1] != "tree " tree[i]) fail("commit: tree")
      k = 2
      if (par[i] != "-") { if (L[2] != "parent " par[i]) fail("commit: parent"); k = 3 }
      a = aname[who] " <" amail[who] "> "
      if (substr(L[k], 1, length(a) + 7) != "author " a) fail("commit: author")
      t = substr(L[k], length(a) + 8)
      if (t !~ /^(0|[1-9][0-9]?[0-9]?[0-9]?[0-9]?[0-9]?[0-9]?[0-9]?[0-9]?[0-9]?[0-9]?) \+0000$/) fail("commit: author date")
      asec[i] = t; sub(/ .*/, "", asec[i])
      if (substr(L[k + 1], 1, length(a) + 10) != "committer " a) fail("commit: committer")
      if (substr(L[k + 1], length(a) + 11) !~ /^(0|[1-9][0-9]?[0-9]?[0-9]?[0-9]?[0-9]?[0-9]?[0-9]?[0-9]?[0-9]?[0-9]?) \+0000$/) fail("commit: committer date")
      if (L[k + 2] != "gpgsig -----BEGIN SSH SIGNATURE-----" || L[nl] != " -----END SSH SIGNATURE-----") fail("commit: signature")
      for (j = k + 3; j < nl - 1; j++) if (L[j] !~ /^ [A-Za-z0-9+\/]+$/) fail("commit: signature")
      if (L[nl - 1] !~ /^ [A-Za-z0-9+\/]+=?=?$/) fail("commit: signature")  # padding only at the end
      if (nl < k + 4) fail("commit: signature")
      who_[i] = who; box[i] = substr(ref[i], 1, length(ref[i]) - length(who))
    }
    # The tree: exactly message.json (clear mail), or message.age and message.json (encrypted),
    # each a regular file (100644); nothing else (attachments go to Python).
    function treeobj(data) {
      if (otype != "tree") fail("tree")
      if (size == 40 && substr(data, 1, 20) == "100644 message.json" Z) kind[i] = "clear"
      else if (size == 79 && substr(data, 1, 19) == "100644 message.age" Z && substr(data, 40, 20) == "100644 message.json" Z) kind[i] = "enc"
      else fail("tree: not message.json (and message.age) alone")
    }
    # -- message.json: canonical JSON (docs/protocol.md §4), only the plain subset taken here:
    # every key of a text message present, in order, no unknown key, no attachment, no payload.
    function lit(x) { if (substr(r, 1, length(x)) != x) fail("message.json: not the plain subset"); r = substr(r, length(x) + 1) }
    function str() {  # a canonical string: raw UTF-8 but for \" \\ \b \f \n \r \t and \u00XX (other C0)
      if (!match(r, /^"([^"\\\001-\037]|\\["\\bfnrt]|\\u00[01][0-9a-f])*"/)) fail("message.json: string")
      tok = substr(r, 2, RLENGTH - 2); r = substr(r, RLENGTH + 1)
      if (tok ~ /\\u00(0[89ac]|0d)/ || index(tok, Z)) fail("message.json: string")
      return tok
    }
    function hex() { if (!match(r, /^"[0-9a-f]+"/) || RLENGTH != 66) fail("message.json: hex"); tok = substr(r, 2, 64); r = substr(r, 67); return tok }
    function nhex() { if (substr(r, 1, 4) == "null") { r = substr(r, 5); return "" } return hex() }
    function unesc(s,   h, c) {  # \377 (never in UTF-8) stands in for \\ here; \u0000 goes to Python
      if (index(s, "\\") == 0) return s
      if (index(s, "\\u0000")) fail("message.json: escape")
      gsub(/\\\\/, "\377", s); gsub(/\\"/, "\"", s); gsub(/\\n/, "\n", s); gsub(/\\t/, "\t", s)
      gsub(/\\r/, "\r", s); gsub(/\\b/, "\010", s); gsub(/\\f/, "\014", s)
      while (match(s, /\\u00[01][0-9a-f]/)) {
        h = substr(s, RSTART + 4, 2); c = index("0123456789abcdef", substr(h, 1, 1)) * 16 + index("0123456789abcdef", substr(h, 2, 1)) - 17
        s = substr(s, 1, RSTART - 1) sprintf("%c", c) substr(s, RSTART + 6)
      }
      gsub(/\377/, "\\\\", s)
      return s
    }
    # the white space of Python str.split() (C0 separators, NEL, NBSP, U+1680,
    # U+2000-200A, U+2028/2029, U+202F, U+205F, U+3000)
    function flat(s) {
      gsub(/[\t\n\013\014\r\034-\037 ]|\302[\205\240]|\341\232\200|\342\200[\200-\212\250\251\257]|\342\201\237|\343\200\200/, " ", s)
      gsub(/  +/, " ", s); sub(/^ /, "", s); sub(/ $/, "", s)
      return s
    }
    function chars(s) { gsub(/[\200-\277]/, "", s); return length(s) }
    function name_ok(a) {  # a member name in normal form (§2), printable ASCII only (others: Python)
      if (a == "" || length(a) > 100 || a ~ /[^ -~]/ || a ~ /["*,\/?\\]/ || a ~ /^[ !-]|^team:| $/) return 0
      return a != "." && a != ".."
    }
    function addr_ok(a) { return a == "*" || (substr(a, 1, 5) == "team:" ? name_ok(substr(a, 6)) : name_ok(a)) }
    function leap(y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 }
    function epoch(d,   y, mo, dd, h, mi, s, dim, yy, m, era, yoe, doy) {
      if (d !~ /^[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]\.[0-9][0-9][0-9][0-9][0-9][0-9]Z$/) fail("date")
      y = substr(d, 1, 4) + 0; mo = substr(d, 6, 2) + 0; dd = substr(d, 9, 2) + 0
      h = substr(d, 12, 2) + 0; mi = substr(d, 15, 2) + 0; s = substr(d, 18, 2) + 0
      dim = substr("312831303130313130313031", mo * 2 - 1, 2) + (mo == 2 && leap(y))
      if (y < 1970 || mo < 1 || mo > 12 || dd < 1 || dd > dim || h > 23 || mi > 59 || s > 59) fail("date")
      yy = y - (mo <= 2); m = mo > 2 ? mo - 3 : mo + 9
      era = int(yy / 400); yoe = yy - era * 400; doy = int((153 * m + 2) / 5) + dd - 1
      return ((era * 146097 + yoe * 365 + int(yoe / 4) - int(yoe / 100) + doy - 719468) * 86400) + h * 3600 + mi * 60 + s
    }
    function message(data,   a, b, body, date, from, id, irt, pri, rid, subj, summ, thr, to, T, nt, j, seen_, out, enc, env, ds, sj, bd, x, n_) {
      if (otype != "blob" || size > 16777216 || !(i in rawmsg)) fail("message.json")
      # valid UTF-8 throughout (no surrogates, no overlong forms), as Python decodes it
      if (data !~ /^([\001-\177]|[\302-\337][\200-\277]|\340[\240-\277][\200-\277]|[\341-\354\356\357][\200-\277][\200-\277]|\355[\200-\237][\200-\277]|\360[\220-\277][\200-\277][\200-\277]|[\361-\363][\200-\277][\200-\277][\200-\277]|\364[\200-\217][\200-\277][\200-\277])*$/) fail("message.json: UTF-8")
      r = data
      lit("{\"attachments\":[],\"body\":"); body = unesc(str())
      lit(",\"date\":"); date = str()
      lit(",\"encrypted\":")
      if (substr(r, 1, 4) == "null") { r = substr(r, 5); enc = 0 }
      else {
        lit("{\"format\":\"age-encryption.org/v1\",\"path\":\"message.age\",\"recipients\":[")
        nr = 0; split("", RD)
        if (substr(r, 1, 1) != "]") { RD[str()] = ++nr; while (substr(r, 1, 1) == ",") { r = substr(r, 2); RD[str()] = ++nr } }
        lit("],\"sha256\":"); env = hex()
        lit(",\"size\":")
        if (!match(r, /^(0|[1-9][0-9]*)}/) || RLENGTH > 19) fail("encrypted.size")
        r = substr(r, RLENGTH + 1); enc = 1
      }
      lit(",\"from\":"); from = str()
      a = length(data) - length(r)
      lit(",\"id\":"); id = hex()
      b = length(data) - length(r)
      lit(",\"in_reply_to\":"); irt = nhex()
      lit(",\"payload\":null,\"priority\":")
      if (!match(r, /^"(low|normal|high|urgent)"/)) fail("priority")
      pri = substr(r, 2, RLENGTH - 2); r = substr(r, RLENGTH + 1)
      lit(",\"request_id\":")
      if (substr(r, 1, 4) == "null") { r = substr(r, 5); rid = "" }
      else { rid = str(); if (rid == "" || rid ~ /[^ -~]/ || rid ~ /\\/ || length(rid) > 64) fail("request_id") }
      lit(",\"require_ack\":")
      if (substr(r, 1, 4) == "true") r = substr(r, 5); else lit("false")
      lit(",\"schema_version\":1,\"subject\":"); subj = unesc(str())
      lit(",\"summary\":"); summ = unesc(str())
      lit(",\"thread\":"); thr = nhex()
      lit(",\"to\":["); nt = 0
      do { if (nt) r = substr(r, 2); to = str(); if (!addr_ok(to) || (to in seen_)) fail("to"); seen_[to] = 1; T[++nt] = to } while (substr(r, 1, 1) == ",")
      lit("],\"type\":\"text\"}")
      if (r != "" || nt > 1000) fail("message.json: trailing")
      # content_problem (rules.py), the fast-path subset
      if (from != who_[i] || !name_ok(from) || !(addr[box[i]] in seen_)) fail("from or to")
      if (enc) {
        # The readers of the envelope (docs/protocol.md §9): each once, the sender and every member
        # `to` names directly among them, each a name a member holds or held. Here only the
        # sender and this member, names known to be held; other readers: gitmail checks.
        n_ = 0; for (x in RD) { n_++; if (x != from && x != me) fail("encrypted.recipients") }
        if (n_ != nr || !(from in RD)) fail("encrypted.recipients")
        for (j = 1; j <= nt; j++) if (T[j] != "*" && substr(T[j], 1, 5) != "team:" && !(T[j] in RD)) fail("encrypted.recipients")
      }
      ds = epoch(date)
      if (ds >= now + 86399) fail("date in the future")  # a day ahead of the clock at most (a second to spare)
      if (chars(subj) > 200 || chars(summ) > 120 || length(body) > limit) fail("limits")
      if (enc && (subj != "" || summ != "" || body != "" || kind[i] != "enc")) fail("encrypted")
      if (!enc && kind[i] != "clear") fail("clear")
      if (asec[i] != ds "") fail("author date")  # git author time = the message date in whole seconds
      # commit_message (store.py): subject, body (unless empty or the subject), trailers
      sj = flat(subj); if (sj == "") sj = "(no subject)"
      if (enc) sj = "(encrypted message)"
      bd = body; sub(/^\n+/, "", bd); sub(/\n+$/, "", bd)
      out = sj "\n\n"
      if (bd != "" && bd != sj) out = out bd "\n\n"
      out = out "Message-Id: <" id "@gitmail>"
      for (j = 1; j <= nt; j++) out = out "\nTo: " flat(T[j])
      if (thr != "") out = out "\nThread: <" thr "@gitmail>"
      if (irt != "") out = out "\nIn-Reply-To: <" irt "@gitmail>"
      out = out "\nPriority: " pri "\nType: text"
      if (rid != "") out = out "\nRequest-Id: " rid
      if (rawmsg[i] != out "\n") fail("commit message")
      if (enc && subjects == "decrypt") fail("decrypt")  # Python decrypts the subject
      idtext[i] = substr(data, 1, a) substr(data, b + 1); msgid[i] = id; envsha[i] = env; isenc[i] = enc
      when[i] = ds; subject[i] = sj; checked[i] = 1
    }
    # The visible form of what a terminal would act on, as gitmail.api.views.clean: C0 controls
    # and DEL as \xNN (\t \n \r by name), C1 controls (U+0080-009F) and U+00AD as \xNN; as
    # \uNNNN U+061C, U+2028-202E and the Default_Ignorable_Code_Points but the joiners
    # U+200C/200D and the variation selectors (U+034F, U+115F-1160, U+17B4-17B5, U+180B-180F,
    # U+200B, U+200E/200F, U+2060-206F, U+3164, U+FEFF, U+FFA0, U+FFF0-FFF8, U+1BCA0-1BCA3,
    # U+1D173-1D17A, U+E0000-E00FF, U+E01F0-E0FFF), each matched by its UTF-8 bytes.
    # Everything else stays. tests/output/test_sanitise_notice.py holds it to clean().
    function vis(s,   out, c, n, j) {
      out = ""
      while (match(s, /[\001-\037\177]|\302[\200-\237\255]|\315\217|\330\234|\341\205[\237\240]|\341\236[\264\265]|\341\240[\213-\217]|\342\200[\213\216\217\250-\256]|\342\201[\240-\257]|\343\205\244|\357\273\277|\357\276\240|\357\277[\260-\270]|\360\233\262[\240-\243]|\360\235\205[\263-\272]|\363\240[\200-\203][\200-\277]|\363\240\207[\260-\277]|\363\240[\210-\277][\200-\277]/)) {
        c = substr(s, RSTART, RLENGTH); out = out substr(s, 1, RSTART - 1); s = substr(s, RSTART + RLENGTH)
        if (c == "\t") out = out "\\t"; else if (c == "\n") out = out "\\n"; else if (c == "\r") out = out "\\r"
        else if (RLENGTH == 1) out = out sprintf("\\x%02x", ord[c])
        else {  # the code point of the UTF-8 sequence
          n = ord[substr(c, 1, 1)] - (RLENGTH == 2 ? 192 : RLENGTH == 3 ? 224 : 240)
          for (j = 2; j <= RLENGTH; j++) n = n * 64 + ord[substr(c, j, 1)] - 128
          out = out sprintf(n < 256 ? "\\x%02x" : "\\u%04x", n)
        }
      }
      return out s
    }
    function ago(s) {
      if (s < 60) return "just now"
      if (s >= 86400) return int(s / 86400) " day" (s >= 172800 ? "s" : "") " ago"
      if (s >= 3600) return int(s / 3600) " h ago"
      return int(s / 60) " min ago"
    }
    function head(s, k,   j, c) {  # the first k characters (code points) of s
      for (j = 1; j <= length(s); j++) if (substr(s, j, 1) !~ /[\200-\277]/ && --k < 0) return substr(s, 1, j - 1)
      return s
    }
    END {
      if (bad || want > 0) { debug("incomplete"); exit 1 }
      if (n == 0) exit 0
      # The Message-IDs (sha256 of message.json without its id) and the ciphertexts (sha256 of
      # message.age, against the envelope): one run of sha256sum over files written here, kept
      # (no rm: one process less) and overwritten next time. A concurrent notice writing the same
      # names can only make a hash differ, never match: the expected hashes come from this run.
      for (j = 1; j <= n; j++) if (!checked[j] || (isenc[j] && !(j in cipher))) { debug("incomplete"); exit 1 }
      if (index(tmp, Q)) { debug("path"); exit 1 }  # quoted for sh below
      files = ""; nf = 0
      for (j = 1; j <= n; j++) {
        fn = tmp "." j ".json"; printf "%s", idtext[j] > fn; close(fn); files = files " " Q fn Q; hf[++nf] = msgid[j]
        if (isenc[j]) { fn = tmp "." j ".age"; printf "%s", cipher[j] > fn; close(fn); files = files " " Q fn Q; hf[++nf] = envsha[j] }
      }
      cmd = ENVIRON["_GM_SHA"] " --" files " 2>/dev/null"
      k = 0; ok = 1
      while ((cmd | getline l) > 0) { sub(/^\\/, "", l); if (substr(l, 1, 64) != hf[++k]) ok = 0 }
      close(cmd)
      if (!ok || k != nf) { debug("Message-ID or ciphertext hash"); exit 1 }
      cnt = 0
      for (j = 1; j <= n; j++) {
        if (msgid[j] in ids) continue  # one message on two of the inbox refs counts once
        ids[msgid[j]] = 1; cnt++
        w[cnt] = when[j]; who[cnt] = who_[j]; id[cnt] = msgid[j]; subj[cnt] = subject[j]; e[cnt] = isenc[j]
      }
      for (a = 1; a <= cnt; a++) for (b = a + 1; b <= cnt; b++) if (w[b] > w[a]) {
        t = w[a]; w[a] = w[b]; w[b] = t; t = who[a]; who[a] = who[b]; who[b] = t
        t = id[a]; id[a] = id[b]; id[b] = t; t = subj[a]; subj[a] = subj[b]; subj[b] = t; t = e[a]; e[a] = e[b]; e[b] = t
      }
      s = subj[1]; if (chars(s) > 50) s = head(s, 48) ".."  # as the %<(50,trunc) of git and gitmail.hooks
      s = vis(s); enc = e[1]
      age = ago(now - w[1])
      if (cnt == 1) {
        m = substr(id[1], 1, 8)
        if (enc) printf "📬 1 new encrypted message from %s (%s)  Run: gitmail read %s\n", who[1], age, m
        else printf "📬 1 new message from %s (%s): \"%s\"  Run: gitmail read %s\n", who[1], age, s, m
        exit 0
      }
      k = 0
      for (a = 1; a <= cnt; a++) if (!(who[a] in named)) { named[who[a]] = 1; k++; if (k <= 3) list = list (k > 1 ? ", " : "") who[a] }
      if (k > 3) list = list " and " (k - 3) " more"
      newest = enc ? "newest (" age ") encrypted" : "newest (" age "): \"" s "\""
      printf "📬 %d new messages from %s; %s  Run: gitmail read\n", cnt, list, newest
    }' || return 1
  printf '%s\n' "$2" >"$_gm_data/hook-seen" 2>/dev/null
  return 0
}
