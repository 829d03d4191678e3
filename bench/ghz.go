package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// GhzResult is a closed-loop ghz run against one server: the issue's
// prescribed load tool, as a cross-check of the harness's own generator.
type GhzResult struct {
	Server             string
	Requests           int
	RPS                float64
	P50, P99           time.Duration
	ServerCPU, GhzCPU  time.Duration
	Statuses           map[string]int
	Concurrency, Conns int
}

// CPUPerRequest is the server's CPU time per request.
func (g *GhzResult) CPUPerRequest() time.Duration {
	if g.Requests == 0 {
		return 0
	}
	return g.ServerCPU / time.Duration(g.Requests)
}

// ghz runs ghz closed loop against t for the phase, with the first 1,000
// requests of src as its round-robin data (ghz cannot patch tokens in).
func (b *bench) ghz(t *Target, p *Proc, src Source) (*GhzResult, error) {
	dataPath := filepath.Join(b.cfg.WorkDir, "ghz-data.json")
	if t == b.noopT { // written afresh for each run: the tokens are this database's
		var buf bytes.Buffer
		buf.WriteByte('[')
		for i := range 1000 {
			raw, _ := src.Next(uint64(i))
			var cr authv3.CheckRequest
			if err := proto.Unmarshal(raw, &cr); err != nil {
				return nil, err
			}
			j, err := protojson.Marshal(&cr)
			if err != nil {
				return nil, err
			}
			if i > 0 {
				buf.WriteByte(',')
			}
			buf.Write(j)
		}
		buf.WriteByte(']')
		if err := os.WriteFile(dataPath, buf.Bytes(), 0o644); err != nil {
			return nil, err
		}
	}
	g := &GhzResult{Server: t.Name, Concurrency: Workers(), Conns: 2}
	args := []string{"--insecure", "--call", "envoy.service.auth.v3.Authorization/Check", "-D", dataPath,
		"-c", strconv.Itoa(g.Concurrency), "--connections", strconv.Itoa(g.Conns), "-O", "json"}
	run := func(d time.Duration) ([]byte, time.Duration, error) {
		cmd := exec.CommandContext(b.ctx, b.cfg.Ghz, append(args, "-z", d.String(), t.Addr)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return nil, 0, fmt.Errorf("%v: %s", err, stderr.String())
		}
		return out, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), nil
	}
	if _, _, err := run(b.cfg.Warm); err != nil {
		return nil, err
	}
	cpu0, err := p.CPU()
	if err != nil {
		return nil, err
	}
	out, ghzCPU, err := run(b.cfg.Phase)
	if err != nil {
		return nil, err
	}
	cpu1, err := p.CPU()
	if err != nil {
		return nil, err
	}
	var rep struct {
		Count   int     `json:"count"`
		RPS     float64 `json:"rps"`
		LatDist []struct {
			Percentage int   `json:"percentage"`
			Latency    int64 `json:"latency"`
		} `json:"latencyDistribution"`
		Statuses map[string]int `json:"statusCodeDistribution"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		return nil, fmt.Errorf("ghz output: %w", err)
	}
	g.Requests, g.RPS, g.Statuses = rep.Count, rep.RPS, rep.Statuses
	for _, l := range rep.LatDist {
		switch l.Percentage {
		case 50:
			g.P50 = time.Duration(l.Latency)
		case 99:
			g.P99 = time.Duration(l.Latency)
		}
	}
	g.ServerCPU, g.GhzCPU = cpu1-cpu0, ghzCPU
	b.logf("ghz %-9s %8.0f rps p50 %v p99 %v server cpu/req %v ghz cpu/req %v %v", g.Server, g.RPS, g.P50, g.P99,
		g.CPUPerRequest(), g.GhzCPU/time.Duration(max(g.Requests, 1)), g.Statuses)
	return g, nil
}
