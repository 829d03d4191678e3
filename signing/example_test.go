package signing_test

import (
	"fmt"
	"net/http"
	"time"

	"github.com/tollgate/tollgate/signing"
)

// A client signs each request just before sending it, with its token's id
// (or its publishable token) and the signing secret that
// "tollgate tokens update ID --signed" printed. This is the first test
// vector of docs/signing.md; a real client passes time.Now().
func ExampleSignHTTP() {
	req, err := http.NewRequest("GET", "https://api.example.com/v1/prices?symbols=MSFT,AAPL&range=1d&q=net+income&page=2", nil)
	if err != nil {
		panic(err)
	}
	now := time.Date(2026, 11, 22, 6, 30, 0, 0, time.UTC)
	secret := []byte("tss_0123456789ABCDEFGHIJabcdefghij0123456789")
	if err := signing.SignHTTP(req, "tok_d1sBq0KTuzMEX0to", secret, now); err != nil {
		panic(err)
	}
	// Send req with http.DefaultClient.Do(req); here, show what was added.
	for _, name := range []string{signing.DateHeader, signing.ContentHeader, "Authorization"} {
		fmt.Printf("%s: %s\n", name, req.Header.Get(name))
	}
	// Output:
	// x-tollgate-date: 20261122T063000Z
	// x-tollgate-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
	// Authorization: TOLLGATE-HMAC-SHA256 Credential=tok_d1sBq0KTuzMEX0to/20261122/tollgate_request, SignedHeaders=host;x-tollgate-content-sha256;x-tollgate-date, Signature=43c3cbb327d65085f8d3f0b7aa18fdb58cf7fda9a02499560eeac4d6eced5cb6
}

// A server that is not Tollgate can verify the same signature: parse the
// Authorization header, describe the request as it arrived, and call
// Verify with the signing secret.
func ExampleVerify() {
	a, err := signing.ParseAuthorization("TOLLGATE-HMAC-SHA256 Credential=tok_d1sBq0KTuzMEX0to/20261122/tollgate_request, " +
		"SignedHeaders=host;x-tollgate-content-sha256;x-tollgate-date, Signature=43c3cbb327d65085f8d3f0b7aa18fdb58cf7fda9a02499560eeac4d6eced5cb6")
	if err != nil {
		panic(err)
	}
	headers := map[string]string{
		"host":                      "api.example.com",
		"x-tollgate-date":           "20261122T063000Z",
		"x-tollgate-content-sha256": signing.HashPayload(nil),
	}
	r := signing.Request{
		Method: "GET", Path: "/v1/prices", RawQuery: "symbols=MSFT,AAPL&range=1d&q=net+income&page=2",
		Header:      func(name string) string { return headers[name] },
		PayloadHash: signing.HashPayload(nil), // the hash of the body received
	}
	secret := []byte("tss_0123456789ABCDEFGHIJabcdefghij0123456789")
	now := time.Date(2026, 11, 22, 6, 31, 0, 0, time.UTC)
	fmt.Println(signing.Verify(a, r, secret, now, 5*time.Minute))
	r.Method = "DELETE"
	fmt.Println(signing.Verify(a, r, secret, now, 5*time.Minute) != nil)
	// Output:
	// <nil>
	// true
}
