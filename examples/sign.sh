#!/usr/bin/env bash
# sign.sh signs a request for Tollgate (TOLLGATE-HMAC-SHA256, docs/signing.md)
# with nothing but bash, openssl and the usual POSIX tools (od, sed, tr,
# awk, sort). It takes the same flags as `tollgate sign` and prints the
# same three headers, one "Name: value" per line:
#
#   examples/sign.sh --token tok_… --secret tss_… --method POST \
#       --url 'https://api.example.com/v1/orders?dry_run=true' \
#       --header 'Content-Type: application/json' --body-file order.json
#
#   x-tollgate-date: 20261122T063000Z
#   x-tollgate-content-sha256: 743ee7d2…
#   Authorization: TOLLGATE-HMAC-SHA256 Credential=tok_…/20261122/tollgate_request, SignedHeaders=…, Signature=…
#
# Flags:
#   --token T       the token's id (tok_…) or the publishable token (pk_…)
#   --secret S      the token's signing secret (tss_…)
#   --method M      the request's method (default GET)
#   --url URL       the absolute URL as it goes on the wire: path and query
#                   already percent-encoded, exactly as the client sends them
#   --header K:V    a header to send and sign (repeatable; a repeated name
#                   is signed as its values joined by ",")
#   --body-file F   the exact bytes of the request's body (default: none)
#   --date D        sign as of D, YYYYMMDDTHHMMSSZ (default: now, UTC)
#
# Send every printed header, and every --header, with the request. Header
# values are compared with runs of ASCII whitespace collapsed; Tollgate also
# collapses Unicode spaces (such as U+00A0), so keep those out of signed
# header values when signing with this script.
set -euf
export LC_ALL=C

die() { printf 'sign.sh: %s\n' "$*" >&2; exit 2; }

token= secret= method=GET url= body_file= date=
names=() values=()
while [ $# -gt 0 ]; do
	case $1 in
	--token) token=${2?--token needs a value}; shift 2 ;;
	--secret) secret=${2?--secret needs a value}; shift 2 ;;
	--method) method=${2?--method needs a value}; shift 2 ;;
	--url) url=${2?--url needs a value}; shift 2 ;;
	--header) h=${2?--header needs a value}; shift 2
		case $h in *:*) ;; *) die "--header '$h': want Name:value" ;; esac
		name=$(printf '%s' "${h%%:*}" | tr 'A-Z' 'a-z' | sed 's/^[[:space:]]*//; s/[[:space:]]*$//')
		[ -n "$name" ] || die "--header '$h': want Name:value"
		names+=("$name")
		values+=("$(printf '%s' "${h#*:}" | sed 's/^[[:space:]]*//; s/[[:space:]]*$//')") ;;
	--body-file) body_file=${2?--body-file needs a value}; shift 2 ;;
	--date) date=${2?--date needs a value}; shift 2 ;;
	*) die "unknown argument '$1' (see the comment at the top of this script)" ;;
	esac
done
[ -n "$token" ] && [ -n "$secret" ] && [ -n "$url" ] || die "--token, --secret and --url are required"
method=$(printf '%s' "$method" | tr 'a-z' 'A-Z')
[ -n "$date" ] || date=$(date -u +%Y%m%dT%H%M%SZ)
case $date in
[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]T[0-9][0-9][0-9][0-9][0-9][0-9]Z) ;;
*) die "--date: want YYYYMMDDTHHMMSSZ, like 20261122T063000Z" ;;
esac
day=${date%%T*}

# The URL: scheme://[userinfo@]host[:port]/path?query#fragment.
case $url in *://*) ;; *) die "--url must be absolute, like https://api.example.com/v1/prices?symbol=AAPL" ;; esac
rest=${url#*://}
rest=${rest%%#*}
authority=${rest%%[/?]*}
host=${authority##*@}
[ -n "$host" ] || die "--url must be absolute, like https://api.example.com/v1/prices?symbol=AAPL"
rest=${rest#"$authority"}
path=${rest%%\?*}
query=
case $rest in *\?*) query=${rest#*\?} ;; esac
[ -n "$path" ] || path=/

sha256_hex() { openssl dgst -sha256 -r | cut -d' ' -f1; }
# hmac_hex HEXKEY DATA: HMAC-SHA256 of DATA under the key, in hex.
hmac_hex() { printf '%s' "$2" | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$1" -r | cut -d' ' -f1; }
to_hex() { printf '%s' "$1" | od -An -v -tx1 | tr -d ' \n'; }

if [ -n "$body_file" ]; then
	[ -r "$body_file" ] || die "--body-file: cannot read $body_file"
	payload=$(sha256_hex <"$body_file")
else
	payload=$(printf '' | sha256_hex)
fi

# canonical_query: decode each key and value (a '+' is a space; a key or
# value with a bad %-escape is taken literally), encode it again keeping
# only A-Z a-z 0-9 - _ . ~ (everything else as %XX, upper-case hex), and
# sort by key, then value, byte by byte.
canonical_query() {
	printf '%s' "$1" | awk '
	BEGIN { RS = "&"; for (i = 1; i < 256; i++) ord[sprintf("%c", i)] = i; hexd = "0123456789ABCDEF" }
	function enc(s,    t, valid, out, i, c, hh, code) {
		t = s; gsub(/%[0-9A-Fa-f][0-9A-Fa-f]/, "", t); valid = index(t, "%") == 0
		out = ""
		for (i = 1; i <= length(s); i++) {
			c = substr(s, i, 1)
			if (valid && c == "%") {
				hh = toupper(substr(s, i + 1, 2)); i += 2
				code = (index(hexd, substr(hh, 1, 1)) - 1) * 16 + index(hexd, substr(hh, 2, 1)) - 1
				if (code > 0 && sprintf("%c", code) ~ /^[A-Za-z0-9_.~-]$/) out = out sprintf("%c", code)
				else out = out "%" hh
			} else if (valid && c == "+") {
				out = out "%20"
			} else if (c ~ /^[A-Za-z0-9_.~-]$/) {
				out = out c
			} else {
				out = out sprintf("%%%02X", ord[c])
			}
		}
		return out
	}
	$0 != "" {
		k = $0; v = ""
		if ((j = index($0, "=")) > 0) { k = substr($0, 1, j - 1); v = substr($0, j + 1) }
		printf "%s\t%s\n", enc(k), enc(v)
	}' | sort | awk -F '\t' '{ printf "%s%s=%s", (NR > 1 ? "&" : ""), $1, $2 }'
}

# header_value NAME: the value signed for a header, whitespace collapsed.
header_value() {
	local v= sep= i
	case $1 in
	host) v=$host ;;
	x-tollgate-date) v=$date ;;
	x-tollgate-content-sha256) v=$payload ;;
	*)
		for i in "${!names[@]}"; do
			if [ "${names[$i]}" = "$1" ]; then v=$v$sep${values[$i]}; sep=,; fi
		done ;;
	esac
	printf '%s' "$v" | tr '\t\n\r\v\f' '     ' | tr -s ' ' | sed 's/^ //; s/ $//'
}

signed=$( { printf '%s\n' host x-tollgate-content-sha256 x-tollgate-date; for n in ${names[@]+"${names[@]}"}; do printf '%s\n' "$n"; done; } | sort -u)
signed_list=$(printf '%s' "$signed" | tr '\n' ';')

nl='
'
canonical=$method$nl$path$nl$(canonical_query "$query")$nl
for h in $signed; do
	canonical=$canonical$h:$(header_value "$h")$nl
done
canonical=$canonical$nl$signed_list$nl$payload

string_to_sign="TOLLGATE-HMAC-SHA256$nl$date$nl$day/tollgate_request$nl$(printf '%s' "$canonical" | sha256_hex)"

k_day=$(hmac_hex "$(to_hex "TOLLGATE$secret")" "$day")
k_signing=$(hmac_hex "$k_day" tollgate_request)
signature=$(hmac_hex "$k_signing" "$string_to_sign")

if [ -n "${SIGN_SH_DEBUG:-}" ]; then
	printf -- '--- canonical request\n%s\n--- string to sign\n%s\n--- signing key\n%s\n---\n' \
		"$canonical" "$string_to_sign" "$k_signing" >&2
fi
printf 'x-tollgate-date: %s\n' "$date"
printf 'x-tollgate-content-sha256: %s\n' "$payload"
printf 'Authorization: TOLLGATE-HMAC-SHA256 Credential=%s/%s/tollgate_request, SignedHeaders=%s, Signature=%s\n' \
	"$token" "$day" "$signed_list" "$signature"
