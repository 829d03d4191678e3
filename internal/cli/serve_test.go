package cli_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startServe runs "tollgate serve" on free ports over the embedded store in
// dir and returns its metrics address once it serves, and the lines it
// logs. What it prints goes to the file stdout in dir.
func startServe(t *testing.T, dir string, args ...string) (string, <-chan string, *exec.Cmd) {
	t.Helper()
	s := startServeEnv(t, dir, []string{"TOLLGATE_DATABASE_URL=sqlite:" + filepath.Join(dir, "t.db")}, args...)
	return s.Metrics, s.lines, s.cmd
}

// served is a running "tollgate serve": its addresses, as it logs them,
// the lines it logs after, and the process.
type served struct {
	GRPC, HTTP, Metrics string
	lines               <-chan string
	cmd                 *exec.Cmd
}

// startServeEnv runs "tollgate serve" on free ports with env added to the
// environment, and returns once it serves; it is stopped when t ends.
func startServeEnv(t *testing.T, dir string, env []string, args ...string) *served {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0", "--log-format", "json"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	stdout, err := os.Create(filepath.Join(dir, "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	defer stdout.Close()
	cmd.Stdout = stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("serve exited before serving")
			}
			var rec struct{ Msg, GRPC, HTTP, Metrics string }
			if json.Unmarshal([]byte(l), &rec) == nil && rec.Msg == "serving" {
				return &served{GRPC: rec.GRPC, HTTP: rec.HTTP, Metrics: rec.Metrics, lines: lines, cmd: cmd}
			}
		case <-deadline:
			t.Fatal("serve did not start within 20s")
		}
	}
}

func metricsText(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// waitFor polls the metrics until want appears.
func waitFor(t *testing.T, addr, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Contains(metricsText(t, addr), want) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("metrics never showed %s", want)
}

func TestServeReloadsConfig(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "tollgate.yaml")
	write := func(s string) {
		if err := os.WriteFile(conf, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("cache-ttl: 1m\ncache-size: 1000\n")
	addr, lines, cmd := startServe(t, dir, "--config", conf)
	waitFor(t, addr, `cache_size="1000",cache_ttl="1m0s"`)

	write("cache-ttl: 2m\ncache-size: 2000\n")
	waitFor(t, addr, `cache_size="2000",cache_ttl="2m0s"`)

	// A bad file is refused and the settings in effect stay.
	write("cache-ttl: soon\n")
	deadline := time.After(10 * time.Second)
	for refused := false; !refused; {
		select {
		case l := <-lines:
			refused = strings.Contains(l, "reload refused")
		case <-deadline:
			t.Fatal("no 'reload refused' log line for a bad config file")
		}
	}
	if m := metricsText(t, addr); !strings.Contains(m, `cache_ttl="2m0s"`) {
		t.Errorf("settings changed by a refused reload")
	}

	// SIGHUP re-reads the file.
	write("cache-ttl: 3m\ncache-size: 2000\nresync-interval: 7s\n")
	cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, addr, `cache_ttl="3m0s"`)

	// The resync interval is read only at start: the reload names it, by
	// its flag, as needing a restart, and the reloadable ones not.
	deadline = time.After(10 * time.Second)
	for {
		select {
		case l := <-lines:
			if !strings.Contains(l, `"need_restart":[`) {
				continue
			}
			if !strings.Contains(l, `"need_restart":["resync-interval"]`) {
				t.Fatalf("reload log line %s, want need_restart [resync-interval] alone", l)
			}
			return
		case <-deadline:
			t.Fatal("no reload log line naming resync-interval as needing a restart")
		}
	}
}

func TestServeRefusesBadSettings(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "bad.yaml")
	os.WriteFile(conf, []byte("cache-sizee: 10\n"), 0o600)
	c := &cli{t: t, url: "sqlite:" + filepath.Join(dir, "t.db"), dir: dir}
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"unknown key":         {[]string{"serve", "--config", conf}, `unknown setting "cache-sizee"`},
		"zero ttl":            {[]string{"serve", "--cache-ttl", "0s"}, "the cache TTL must be > 0"},
		"bad source":          {[]string{"serve", "--token-sources", "cookie"}, "token source"},
		"no file":             {[]string{"serve", "--config", filepath.Join(dir, "missing.yaml")}, "config file"},
		"no metrics address":  {[]string{"serve", "--metrics-addr", ""}, "the metrics listen address must be set"},
		"bad profile":         {[]string{"serve", "--response-profile", "carto"}, `response profile "carto": want tollgate or iex`},
		"negative workers":    {[]string{"serve", "--grpc-stream-workers", "-1"}, "the gRPC stream workers must be >= 0"},
		"negative heap floor": {[]string{"serve", "--gc-heap-floor-mib", "-1"}, "gc-heap-floor-mib: -1 is negative"},
		"replay share above the cache": {[]string{"serve", "--replay-cache-size", "10", "--replay-per-token", "11"},
			"one token's share of the replay memory (11) must not exceed its size (10)"},
	} {
		if msg := c.fails(tc.args...); !strings.Contains(msg, tc.want) {
			t.Errorf("%s: stderr %q, want it to mention %q", name, msg, tc.want)
		}
	}
}

// TestDemoBannerNamesTheHTTPAddress: the demo's banner points at the
// console on the address --http-addr gives, not a fixed port.
func TestDemoBannerNamesTheHTTPAddress(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dir := t.TempDir()
	// The banner is printed before the server says it serves.
	startServe(t, dir, "--demo", "--http-addr", addr)
	out, err := os.ReadFile(filepath.Join(dir, "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "http://" + addr + "/console/"; !strings.Contains(string(out), want) {
		t.Errorf("the demo banner does not name %s:\n%s", want, out)
	}
}
