package cli_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tollgate/tollgate/internal/seal"
	"github.com/tollgate/tollgate/internal/store"
	"github.com/tollgate/tollgate/internal/store/storetest"
	"github.com/tollgate/tollgate/signing"
)

// rotationKey is a fresh encryption key, its base64 and its id.
type rotationKey struct{ b64, id string }

func newRotationKey() rotationKey {
	k := make([]byte, seal.KeySize)
	rand.Read(k)
	return rotationKey{base64.StdEncoding.EncodeToString(k), seal.KeyID(k)}
}

// TestKeyRotation is the operator's procedure: tokens made under key A;
// a server with B current and A previous checks their signed requests and
// shows their kept values; reseal moves everything to B (refusing a key id
// the replicas do not report, and changing nothing on a second run); a
// server with B alone then serves them all, and A alone opens nothing.
func TestKeyRotation(t *testing.T) {
	for _, d := range storetest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			dbURL := "sqlite:" + filepath.Join(dir, "t.db")
			if d == store.Postgres {
				dbURL = storetest.URL(t, d)
			}
			a, b := newRotationKey(), newRotationKey()
			write := func(name, s string) string {
				p := filepath.Join(dir, name)
				if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
					t.Fatal(err)
				}
				return p
			}
			bFile, prevFile := write("b.key", b.b64+"\n"), write("previous.keys", "# the key before 2026-12\n"+a.b64+"\n")
			c := &cli{t: t, url: dbURL, dir: dir, env: []string{"TOLLGATE_ENCRYPTION_KEY=" + a.b64}}
			var mig struct{ Version int64 }
			c.json(&mig, "migrate")
			var acc struct {
				ID          string `json:"id"`
				SecretToken string `json:"secret_token"`
			}
			c.json(&acc, "accounts", "create", "--name", "Rotating Ltd")
			var tok struct {
				ID            string `json:"id"`
				Token         string `json:"token"`
				SigningSecret string `json:"signing_secret"`
			}
			c.json(&tok, "tokens", "create", "--account", acc.ID, "--dataset", "prices=read", "--signed")
			if tok.SigningSecret == "" {
				t.Fatalf("tokens create --signed printed no signing secret: %+v", tok)
			}
			env := []string{"TOLLGATE_DATABASE_URL=" + dbURL}
			rotated := append(env, "--encryption-key-file", bFile, "--previous-encryption-keys-file", prevFile)

			// B current, A previous: everything made under A still works.
			s := startServeEnv(t, dir, rotated[:1], rotated[1:]...)
			if got := checkSigned(t, s.GRPC, tok.ID, tok.Token, tok.SigningSecret); got != "allow" {
				t.Fatalf("B with A as previous: a signed request got %s, want allow", got)
			}
			if got := reveal(t, s.HTTP, acc.SecretToken, tok.ID); got != tok.Token {
				t.Errorf("B with A as previous: the kept value is %q, want the token", got)
			}
			if want := fmt.Sprintf(`tollgate_encryption_keys_info{current=%q,previous=%q} 1`, b.id, a.id); !strings.Contains(metricsText(t, s.Metrics), want) {
				t.Errorf("metrics lack %s", want)
			}

			// reseal: under B, with A to open; never under a key the
			// replicas do not report.
			c.env = []string{"TOLLGATE_ENCRYPTION_KEY_FILE=" + bFile, "TOLLGATE_PREVIOUS_ENCRYPTION_KEYS=" + a.b64}
			if msg := c.fails("reseal", "--key-id", a.id); !strings.Contains(msg, "has id "+b.id+", not --key-id "+a.id) {
				t.Errorf("reseal with another key id: stderr %q", msg)
			}
			var rep struct {
				KeyID      string `json:"key_id"`
				Resealed   int    `json:"resealed"`
				Current    int    `json:"already_current"`
				Unopenable []struct {
					TokenID string `json:"token_id"`
					What    string `json:"what"`
				} `json:"unopenable"`
			}
			c.json(&rep, "reseal", "--key-id", b.id, "--batch-size", "1")
			if rep.KeyID != b.id || rep.Resealed != 2 || rep.Current != 0 || len(rep.Unopenable) != 0 {
				t.Errorf("reseal: %+v, want the signing secret and the value re-sealed under %s", rep, b.id)
			}
			c.json(&rep, "reseal", "--key-id", b.id)
			if rep.Resealed != 0 || rep.Current != 2 {
				t.Errorf("second reseal: %+v, want both already current", rep)
			}
			// The running server heard of the re-sealed secret and reads it
			// again, under B.
			if got := checkSigned(t, s.GRPC, tok.ID, tok.Token, tok.SigningSecret); got != "allow" {
				t.Errorf("after the reseal, same server: a signed request got %s, want allow", got)
			}
			s.cmd.Process.Kill()
			s.cmd.Wait()

			// B alone: the previous key is dropped.
			s = startServeEnv(t, dir, env, "--encryption-key-file", bFile)
			if got := checkSigned(t, s.GRPC, tok.ID, tok.Token, tok.SigningSecret); got != "allow" {
				t.Errorf("B alone: a signed request got %s, want allow", got)
			}
			if got := reveal(t, s.HTTP, acc.SecretToken, tok.ID); got != tok.Token {
				t.Errorf("B alone: the kept value is %q, want the token", got)
			}
			c.env = []string{"TOLLGATE_ENCRYPTION_KEY=" + b.b64}
			c.json(&rep, "reseal", "--key-id", b.id)
			if rep.Current != 2 || len(rep.Unopenable) != 0 {
				t.Errorf("reseal with B alone (a check): %+v, want both current", rep)
			}

			// The old key alone opens nothing now: reseal says which tokens,
			// never their values, and exits non-zero.
			c.env = []string{"TOLLGATE_ENCRYPTION_KEY=" + a.b64}
			out, errOut, ok := c.run("reseal", "--key-id", a.id)
			if ok || !strings.Contains(out, "unopenable: "+tok.ID+" signing secret") || !strings.Contains(out, "unopenable: "+tok.ID+" value") ||
				!strings.Contains(errOut, "2 sealed values open with none of the keys given") {
				t.Errorf("reseal with A alone: ok %v, stdout %q, stderr %q; want both values named unopenable and a failure", ok, out, errOut)
			}
			if strings.Contains(out+errOut, tok.Token) || strings.Contains(out+errOut, tok.SigningSecret) {
				t.Error("reseal printed a token's value or signing secret")
			}

			// Previous keys without a current one are refused, not served.
			c.env = nil
			if msg := c.fails("serve", "--previous-encryption-keys-file", prevFile); !strings.Contains(msg, "no current key") {
				t.Errorf("serve with previous keys alone: stderr %q", msg)
			}
			if msg := c.fails("reseal", "--key-id", b.id); !strings.Contains(msg, "no encryption key") {
				t.Errorf("reseal without a key: stderr %q", msg)
			}
		})
	}
}

var rotationSeq atomic.Uint64

// checkSigned sends the server a Check for a request signed with the
// token's secret, as Envoy would, and returns "allow", the deny code, or
// the gRPC error.
func checkSigned(t *testing.T, addr, id, value, secret string) string {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	path := fmt.Sprintf("/v1/prices/AAPL?n=%d&token=%s", rotationSeq.Add(1), url.QueryEscape(value))
	hr, err := http.NewRequest("GET", "https://api.example.com"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := signing.SignHTTP(hr, id, []byte(secret), time.Now()); err != nil {
		t.Fatal(err)
	}
	headers := map[string]string{":authority": "api.example.com", ":method": "GET", ":path": path}
	for _, name := range []string{"authorization", signing.DateHeader, signing.ContentHeader} {
		headers[name] = hr.Header.Get(name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Host: "api.example.com", Path: path, Scheme: "https", Protocol: "HTTP/1.1", Headers: headers,
		}},
		ContextExtensions: map[string]string{"api": "data", "dataset": "prices", "tier": "core"},
	}})
	if err != nil {
		return "error: " + err.Error()
	}
	if resp.GetOkResponse() != nil {
		return "allow"
	}
	return resp.GetDeniedResponse().GetBody()
}

// reveal asks the Tokens API for a token's kept value with the account's
// secret token, and returns it, or the answer's status and body.
func reveal(t *testing.T, addr, secretToken, id string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+addr+"/v1/tokens/"+id+"/value", nil)
	req.Header.Set("Authorization", "Bearer "+secretToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var v struct{ Token string }
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &v) != nil {
		return fmt.Sprintf("%d %s", resp.StatusCode, body)
	}
	return v.Token
}
