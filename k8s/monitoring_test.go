package k8s_test

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// tollgateMetrics are the metrics Tollgate exports (the server's contract).
// Alerts and the dashboard may query only these, plus histogram series.
var tollgateMetrics = []string{
	"tollgate_check_decisions_total",
	"tollgate_check_errors_total",
	"tollgate_check_duration_seconds",
	"tollgate_cache_hits_total",
	"tollgate_cache_misses_total",
	"tollgate_cache_evictions_total",
	"tollgate_cache_entries",
	"tollgate_store_duration_seconds",
	"tollgate_store_errors_total",
	"tollgate_invalidations_total",
	"tollgate_listener_reconnects_total",
	"tollgate_listener_connected",
	"tollgate_tls_cert_not_after_seconds",
	"tollgate_tls_reload_errors_total",
	"tollgate_config_info",
	"tollgate_credits_flush_errors_total",
	"tollgate_credits_flushes_total",
	"tollgate_usage_backlog_rows",
}

var histograms = []string{"tollgate_check_duration_seconds", "tollgate_store_duration_seconds"}

var metricRE = regexp.MustCompile(`\btollgate_[a-z0-9_]+`)

// metricNames returns the Tollgate metric names an expression queries, with
// histogram series (_bucket, _sum, _count) folded into their histogram.
func metricNames(expr string) []string {
	var names []string
	for _, m := range metricRE.FindAllString(expr, -1) {
		for _, h := range histograms {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if m == h+suffix {
					m = h
				}
			}
		}
		names = append(names, m)
	}
	return names
}

// TestAlerts checks that the PrometheusRule has the alerts the SRE guide
// promises, that they query only real metrics, and that each runbook link
// points at a heading in docs/sre.md.
func TestAlerts(t *testing.T) {
	r := MustRender(t, "base")
	rule := only[*monitoringv1.PrometheusRule](t, r)
	anchors := markdownAnchors(t, "../docs/sre.md")

	var alerts []string
	for _, g := range rule.Spec.Groups {
		for _, rl := range g.Rules {
			if rl.Alert == "" {
				continue
			}
			alerts = append(alerts, rl.Alert)
			expr := rl.Expr.String()
			if strings.Count(expr, "(") != strings.Count(expr, ")") {
				t.Errorf("%s: unbalanced parentheses in %q", rl.Alert, expr)
			}
			for _, m := range metricNames(expr) {
				if !slices.Contains(tollgateMetrics, m) {
					t.Errorf("%s: queries %s, which Tollgate does not export", rl.Alert, m)
				}
			}
			if rl.Labels["severity"] == "" {
				t.Errorf("%s: no severity label", rl.Alert)
			}
			url := rl.Annotations["runbook_url"]
			_, anchor, ok := strings.Cut(url, "docs/sre.md#")
			if !ok {
				t.Errorf("%s: runbook_url %q does not point into docs/sre.md", rl.Alert, url)
			} else if !anchors[anchor] {
				t.Errorf("%s: runbook_url anchor #%s is not a heading in docs/sre.md", rl.Alert, anchor)
			}
		}
	}
	for _, want := range []string{
		"TollgateCheckErrorRateHigh",   // Check error rate
		"TollgateCheckLatencyHigh",     // p99 latency
		"TollgateListenerDisconnected", // revocation at risk
		"TollgateCacheHitRatioLow",     // cache hit ratio
		"TollgateStoreErrors",          // store errors
	} {
		if !slices.Contains(alerts, want) {
			t.Errorf("PrometheusRule: no alert %s", want)
		}
	}
}

// TestServiceMonitor checks that the ServiceMonitor selects a Service whose
// ports it names.
func TestServiceMonitor(t *testing.T) {
	r := MustRender(t, "base")
	sm := only[*monitoringv1.ServiceMonitor](t, r)
	sel, err := metaSelector(sm.Spec.Selector.MatchLabels)
	if err != nil {
		t.Fatal(err)
	}
	var ports []string
	for _, s := range all[*corev1.Service](r) {
		if sel.Matches(labels.Set(s.Labels)) {
			for _, p := range s.Spec.Ports {
				ports = append(ports, p.Name)
			}
		}
	}
	if len(ports) == 0 {
		t.Fatalf("ServiceMonitor selector %v matches no Service", sm.Spec.Selector.MatchLabels)
	}
	for _, ep := range sm.Spec.Endpoints {
		if !slices.Contains(ports, ep.Port) {
			t.Errorf("endpoint port %q: got Service ports %v", ep.Port, ports)
		}
	}
}

// TestDashboard checks that docs/grafana-dashboard.json is valid JSON, that
// it queries only Tollgate's metrics, and that it shows every one of them.
func TestDashboard(t *testing.T) {
	data, err := os.ReadFile("../docs/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	var dash struct {
		Title  string           `json:"title"`
		UID    string           `json:"uid"`
		Panels []dashboardPanel `json:"panels"`
	}
	if err := dec.Decode(&dash); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	if dash.Title == "" || dash.UID == "" {
		t.Error("dashboard: want a title and a uid")
	}
	seen := map[string]bool{}
	var walk func([]dashboardPanel)
	walk = func(ps []dashboardPanel) {
		for _, p := range ps {
			for _, target := range p.Targets {
				if target.Expr == "" {
					t.Errorf("panel %q: a target has no expr", p.Title)
				}
				for _, m := range metricNames(target.Expr) {
					if !slices.Contains(tollgateMetrics, m) {
						t.Errorf("panel %q: queries %s, which Tollgate does not export", p.Title, m)
					}
					seen[m] = true
				}
			}
			walk(p.Panels)
		}
	}
	walk(dash.Panels)
	for _, m := range tollgateMetrics {
		if !seen[m] {
			t.Errorf("dashboard: no panel shows %s", m)
		}
	}
}

type dashboardPanel struct {
	Title   string `json:"title"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []dashboardPanel `json:"panels"`
}

func TestMetricNames(t *testing.T) {
	got := metricNames(`histogram_quantile(0.99, sum by (le) (rate(tollgate_check_duration_seconds_bucket{job="tollgate-metrics"}[5m]))) / tollgate_cache_entries`)
	want := []string{"tollgate_check_duration_seconds", "tollgate_cache_entries"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

// markdownAnchors returns the GitHub-style anchors of a Markdown file's
// headings.
func markdownAnchors(tb testing.TB, path string) map[string]bool {
	tb.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	anchors := map[string]bool{}
	inFence := false
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "```") {
			inFence = !inFence
		}
		if inFence || !strings.HasPrefix(line, "#") {
			continue
		}
		title := strings.TrimSpace(strings.TrimLeft(line, "#"))
		var b strings.Builder
		for _, r := range strings.ToLower(title) {
			switch {
			case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
				b.WriteRune(r)
			case r == ' ':
				b.WriteRune('-')
			}
		}
		anchors[b.String()] = true
	}
	return anchors
}

// TestMetricsPort checks that Prometheus scrapes Tollgate's metrics
// listener (TOLLGATE_METRICS_ADDR), not the HTTP port that serves the
// Tokens API and the console, and that the NetworkPolicy opens the first
// to the monitoring namespace and the second to no one.
func TestMetricsPort(t *testing.T) {
	for _, dir := range kustomizations {
		t.Run(dir, func(t *testing.T) {
			r := MustRender(t, dir)
			d := only[*appsv1.Deployment](t, r)
			tg := container(t, &d.Spec.Template.Spec, "tollgate")
			metricsPort, httpPort := addrPort(t, env(tg, "TOLLGATE_METRICS_ADDR")), addrPort(t, env(tg, "TOLLGATE_HTTP_ADDR"))
			if metricsPort == httpPort {
				t.Fatalf("TOLLGATE_METRICS_ADDR and TOLLGATE_HTTP_ADDR share port %d, want metrics on a port of their own", httpPort)
			}
			if !slices.ContainsFunc(tg.Ports, func(p corev1.ContainerPort) bool { return int(p.ContainerPort) == metricsPort }) {
				t.Errorf("tollgate: declares no container port %d (TOLLGATE_METRICS_ADDR)", metricsPort)
			}

			sm := only[*monitoringv1.ServiceMonitor](t, r)
			targets := map[string]int{} // Service port name → target port number
			for _, s := range all[*corev1.Service](r) {
				for _, p := range s.Spec.Ports {
					targets[p.Name] = p.TargetPort.IntValue()
				}
			}
			scraped := false
			for _, ep := range sm.Spec.Endpoints {
				switch targets[ep.Port] {
				case metricsPort:
					scraped = ep.Path == "/metrics"
				case httpPort:
					t.Errorf("endpoint %q scrapes the HTTP port %d, which serves the Tokens API", ep.Port, httpPort)
				}
			}
			if !scraped {
				t.Errorf("no ServiceMonitor endpoint scrapes /metrics on port %d", metricsPort)
			}

			np := only[*networkingv1.NetworkPolicy](t, r)
			opened := false
			for i, rule := range np.Spec.Ingress {
				for _, p := range rule.Ports {
					switch p.Port.IntValue() {
					case metricsPort:
						opened = true
						if len(rule.From) == 0 {
							t.Errorf("ingress rule %d: opens the metrics port to everyone, want the monitoring namespace", i)
						}
					case httpPort:
						t.Errorf("ingress rule %d: opens the HTTP port %d (Tokens API, console) for scraping", i, httpPort)
					}
				}
			}
			if !opened {
				t.Errorf("the NetworkPolicy does not open the metrics port %d", metricsPort)
			}
		})
	}
}

// addrPort returns the port of a listen address such as ":9090".
func addrPort(tb testing.TB, addr string) int {
	tb.Helper()
	_, port, err := net.SplitHostPort(addr)
	n, perr := strconv.Atoi(port)
	if err != nil || perr != nil {
		tb.Fatalf("listen address %q: want host:port", addr)
	}
	return n
}
