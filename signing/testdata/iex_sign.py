#!/usr/bin/env python3
"""Signs one request the way IEX Cloud's reference clients do, written from
their published algorithm with nothing but hmac and hashlib, so that the Go
tests can check Tollgate against an implementation that shares no code with
it. Prints one JSON object: the headers and every intermediate value.

  iex_sign.py --secret S --pk PK --method GET --host H --path /stable/x \
      --query token=PK --date 20261122T063000Z [--body B] --form full|relative

--form full is IEX's Python sample (full path, query without '?');
--form relative is IEXSharp (path after the version prefix, '?query')."""
import argparse
import hashlib
import hmac
import json


def hex_hmac(key, msg):
    # Each key is the UTF-8 of the previous step's hex digest.
    return hmac.new(key.encode("utf-8"), msg.encode("utf-8"), hashlib.sha256).hexdigest()


def main():
    p = argparse.ArgumentParser()
    for name in ("secret", "pk", "method", "host", "path", "query", "date", "form"):
        p.add_argument("--" + name, required=True)
    p.add_argument("--body", default="")
    a = p.parse_args()

    uri, query = a.path, a.query
    if a.form == "relative":
        uri = a.path.lstrip("/").split("/", 1)[1] if "/" in a.path.lstrip("/") else ""
        query = "?" + a.query if a.query else ""
    elif a.form != "full":
        raise SystemExit("--form must be full or relative")

    datestamp = a.date[:8]
    canonical_headers = "host:" + a.host + "\n" + "x-iex-date:" + a.date + "\n"
    signed_headers = "host;x-iex-date"
    payload_hash = hashlib.sha256(a.body.encode("utf-8")).hexdigest()
    canonical_request = "\n".join([a.method, uri, query, canonical_headers, signed_headers, payload_hash])
    scope = datestamp + "/iex_request"
    string_to_sign = "\n".join([
        "IEX-HMAC-SHA256", a.date, scope,
        hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()])
    k_date = hex_hmac(a.secret, datestamp)
    k_sign = hex_hmac(k_date, "iex_request")
    signature = hex_hmac(k_sign, string_to_sign)
    print(json.dumps({
        "canonical_request": canonical_request,
        "string_to_sign": string_to_sign,
        "k_date": k_date,
        "k_sign": k_sign,
        "signature": signature,
        "x_iex_date": a.date,
        "authorization": "IEX-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s"
        % (a.pk, scope, signed_headers, signature),
    }))


if __name__ == "__main__":
    main()
