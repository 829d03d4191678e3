package signing

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Sign signs a request at now for the credential (a token id or a
// publishable token) with a signing secret, and returns the Authorization
// header. r.Header must already return the x-tollgate-date value for now,
// and signedHeaders must be sorted and include host and x-tollgate-date.
func Sign(r Request, credential string, secret []byte, now time.Time, signedHeaders []string) Authorization {
	day := now.UTC().Format(dayFormat)
	canonical := CanonicalRequest(r, signedHeaders)
	sts := StringToSign(r.Header(DateHeader), day, canonical)
	return Authorization{Credential: credential, Day: day, SignedHeaders: signedHeaders, Signature: Signature(Key(secret, day), sts)}
}

// SignHTTP signs an outgoing request in place: it sets x-tollgate-date,
// x-tollgate-content-sha256 (the body's hash) and Authorization, signing
// host, the date, the content hash and any headers named in extra. The body
// is read and put back.
func SignHTTP(req *http.Request, credential string, secret []byte, now time.Time, extra ...string) error {
	body, err := readBody(req)
	if err != nil {
		return err
	}
	if credential == "" || len(secret) == 0 {
		return errors.New("signing: a credential and a secret are needed")
	}
	payload := HashPayload(body)
	req.Header.Set(DateHeader, now.UTC().Format(DateFormat))
	req.Header.Set(ContentHeader, payload)
	signed := []string{"host", ContentHeader, DateHeader}
	for _, h := range extra {
		signed = append(signed, strings.ToLower(h))
	}
	slices.Sort(signed)
	signed = slices.Compact(signed)
	header := func(name string) string {
		if name == "host" {
			if req.Host != "" {
				return req.Host
			}
			return req.URL.Host
		}
		return strings.Join(req.Header.Values(name), ",")
	}
	path := req.URL.EscapedPath()
	a := Sign(Request{Method: req.Method, Path: path, RawQuery: req.URL.RawQuery, Header: header, PayloadHash: payload},
		credential, secret, now, signed)
	req.Header.Set("Authorization", a.String())
	return nil
}

// readBody reads an outgoing request's body, to be signed, and puts it back.
func readBody(req *http.Request) ([]byte, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, nil
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return nil, fmt.Errorf("signing: read body: %w", err)
	}
	req.Body.Close()
	req.Body = io.NopCloser(bytes.NewReader(body))
	return body, nil
}
