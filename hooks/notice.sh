# gitmail_notice: the new-mail notice of the client hooks, without Python (docs/sync.md, "The notice").
# Not a hook itself: `gitmail hooks install` copies this text into post-merge and post-checkout.
#
# $1: the git dir; $2: the hook's `git for-each-ref` listing ("<oid> <refname>" lines).
# Reads .git/gitmail/inbox-refs (which refs are this member's inbox, written by gitmail on
# every ingest) and lists the commits that arrived on them since the last verified tip (or the
# last notice). git itself checks each signature (`%G?`, ssh-keygen) against the allowed-signers
# file gitmail wrote from the verified directory, and the signer must be the mailbox's sender.
# Prints the notice and returns 0, or returns 1 when only gitmail's full check can tell: a moved
# directory, a name that is not plain ASCII, a bad or unknown signature, a merge or a rewritten
# mailbox, more than 10 new messages, no ssh-keygen; and encrypted mail when the setting
# gitmail.noticeSubjects (or $GITMAIL_NOTICE_SUBJECTS) is "decrypt".
gitmail_notice() {
  _gm_data="$1/gitmail"
  [ -r "$_gm_data/inbox-refs" ] && [ -r "$_gm_data/allowed_signers" ] || return 1
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
  # shellcheck disable=SC2086  # ref names and oids: no blanks, no glob characters
  _gm_log=$(git -c gpg.ssh.allowedSignersFile="$_gm_data/allowed_signers" log --max-count=11 --source \
      --format='%G?%x1f%GS%x1f%at%x1f%H%x1f%P%x1f%S%x1f%(trailers:key=Message-Id,valueonly,separator=%x20)%x1f%(trailers:key=To,valueonly,separator=%x1e)%x1f%<(50,trunc)%s' \
      $_gm_ranges 2>/dev/null) || return 1
  # LC_ALL=C: awk sees bytes, so vis() matches the UTF-8 of each character it escapes.
  printf '%s\n' "$_gm_log" | LC_ALL=C awk -F '\037' -v ranges="$_gm_ranges" -v inbox="$_gm_data/inbox-refs" '
    BEGIN {
      for (i = 1; i < 256; i++) ord[sprintf("%c", i)] = i
      subjects = ENVIRON["GITMAIL_NOTICE_SUBJECTS"]; nc = split(ENVIRON["_GM_CONF"], C, "\n")
      for (i = 1; i <= nc; i++) if (subjects == "" && index(C[i], "gitmail.noticesubjects ") == 1) subjects = substr(C[i], 24)
      n = split(ranges, L, "\n")
      for (i = 1; i <= n; i++) {
        m = split(L[i], w, " "); has[w[1]] = m > 1
        for (k = 2; k <= m; k++) bases[w[1], substr(w[k], 2)] = 1
      }
      while ((getline l < inbox) > 0) {  # the address each inbox prefix is for
        k = l; sub(/ .*/, "", k)
        if (k == "inbox" || k == "shared") { l = substr(l, length(k) + 2); p = l; sub(/ .*/, "", p); addr[p] = substr(l, length(p) + 2) }
      }
      srand(); now = srand()
    }
    $0 == "" { next }
    {
      sender = $6; sub(/.*\//, "", sender)
      if (++seen > 10 || NF != 9 || $1 != "G" || $2 != sender || $2 !~ /^[a-z0-9_-]+$/ || $5 ~ / /) { bad = 1; exit }
      if ($7 !~ /^<[0-9a-f]+@gitmail>$/ || length($7) != 74) { bad = 1; exit }  # <sha256 hex@gitmail>
      to = 0; box = substr($6, 1, length($6) - length(sender)); nt = split($8, T, "\036")
      for (i = 1; i <= nt; i++) if (T[i] == addr[box]) to = 1
      if (!to) { bad = 1; exit }  # addressed elsewhere (a signed commit replayed onto this mailbox)
      if (subjects == "decrypt" && $9 ~ /^\(encrypted message\) *$/) { bad = 1; exit }  # Python decrypts
      ours[$6, $4] = 1; parent[$4] = $5; refof[$4] = $6
      if ($7 in ids) next  # one message on two of the inbox refs counts once
      ids[$7] = 1; cnt++
      when[cnt] = $3 + 0; who[cnt] = $2; id[cnt] = $7; subj[cnt] = $9
    }
    # The visible form of what a terminal would act on, as gitmail.api.views.clean: C0 controls
    # and DEL as \xNN (\t \n \r by name), C1 controls (UTF-8 \302\200-\237) as \xNN, and
    # U+061C, U+200E/200F, U+2028-202E, U+2066-2069 as \uNNNN. Everything else stays.
    function vis(s,   out, c, n) {
      out = ""
      while (match(s, /[\001-\037\177]|\302[\200-\237]|\330\234|\342\200[\216\217\250-\256]|\342\201[\246-\251]/)) {
        c = substr(s, RSTART, RLENGTH); out = out substr(s, 1, RSTART - 1); s = substr(s, RSTART + RLENGTH)
        if (c == "\t") out = out "\\t"; else if (c == "\n") out = out "\\n"; else if (c == "\r") out = out "\\r"
        else if (RLENGTH == 1) out = out sprintf("\\x%02x", ord[c])
        else if (RLENGTH == 2 && ord[substr(c, 1, 1)] == 194) out = out sprintf("\\x%02x", ord[substr(c, 2, 1)])
        else if (RLENGTH == 2) out = out "\\u061c"
        else out = out sprintf("\\u%04x", 8192 + (ord[substr(c, 2, 1)] - 128) * 64 + ord[substr(c, 3, 1)] - 128)
      }
      return out s
    }
    function ago(s) {
      if (s < 60) return "just now"
      if (s >= 86400) return int(s / 86400) " day" (s >= 172800 ? "s" : "") " ago"
      if (s >= 3600) return int(s / 3600) " h ago"
      return int(s / 60) " min ago"
    }
    END {
      if (bad) exit 1
      for (c in parent) {  # a fast-forward: each parent is a new commit of that ref, or where it was
        p = parent[c]; r = refof[c]
        if (p == "" ? has[r] : !(((r, p) in ours) || ((r, p) in bases))) exit 1
      }
      if (cnt == 0) exit 0
      for (i = 1; i <= cnt; i++) for (j = i + 1; j <= cnt; j++) if (when[j] > when[i]) {
        t = when[i]; when[i] = when[j]; when[j] = t; t = who[i]; who[i] = who[j]; who[j] = t
        t = id[i]; id[i] = id[j]; id[j] = t; t = subj[i]; subj[i] = subj[j]; subj[j] = t
      }
      s = subj[1]; sub(/ +$/, "", s); s = vis(s)
      enc = s == "(encrypted message)"
      age = ago(now - when[1])
      if (cnt == 1) {
        m = id[1]; gsub(/[<>]/, "", m); m = substr(m, 1, 8)
        if (enc) printf "📬 1 new encrypted message from %s (%s)  Run: gitmail read %s\n", who[1], age, m
        else printf "📬 1 new message from %s (%s): \"%s\"  Run: gitmail read %s\n", who[1], age, s, m
        exit 0
      }
      k = 0
      for (i = 1; i <= cnt; i++) if (!(who[i] in named)) { named[who[i]] = 1; k++; if (k <= 3) list = list (k > 1 ? ", " : "") who[i] }
      if (k > 3) list = list " and " (k - 3) " more"
      newest = enc ? "newest (" age ") encrypted" : "newest (" age "): \"" s "\""
      printf "📬 %d new messages from %s; %s  Run: gitmail read\n", cnt, list, newest
    }' || return 1
  printf '%s\n' "$2" >"$_gm_data/hook-seen" 2>/dev/null
  return 0
}
