package bench

import (
	"bufio"
	"os"
	"regexp"
	"slices"
	"strconv"
	"time"
)

// gcCycle is one line of GODEBUG=gctrace=1 output.
type gcCycle struct {
	At                      time.Duration // since the process started
	STW1, Mark, STW2        time.Duration // wall clock: sweep termination, concurrent mark, mark termination
	AssistCPU, BgCPU, IdleC time.Duration // mark CPU: assists, background workers, idle workers
	HeapStart, HeapEnd      int           // MB, at the start and end of marking
	Live, Goal              int           // MB marked live; the goal for the next cycle
}

var gcLine = regexp.MustCompile(`^gc \d+ @([\d.]+)s \d+%: ([\d.]+)\+([\d.]+)\+([\d.]+) ms clock, [\d.]+\+([\d.]+)/([\d.]+)/([\d.]+)\+[\d.]+ ms cpu, (\d+)->(\d+)->(\d+) MB, (\d+) MB goal`)

// readGCTrace parses every GC cycle logged in path.
func readGCTrace(path string) ([]gcCycle, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []gcCycle
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	ms := func(s string) time.Duration {
		v, _ := strconv.ParseFloat(s, 64)
		return time.Duration(v * float64(time.Millisecond))
	}
	num := func(s string) int { v, _ := strconv.Atoi(s); return v }
	for sc.Scan() {
		m := gcLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		at, _ := strconv.ParseFloat(m[1], 64)
		out = append(out, gcCycle{
			At: time.Duration(at * float64(time.Second)), STW1: ms(m[2]), Mark: ms(m[3]), STW2: ms(m[4]),
			AssistCPU: ms(m[5]), BgCPU: ms(m[6]), IdleC: ms(m[7]),
			HeapStart: num(m[8]), HeapEnd: num(m[9]), Live: num(m[10]), Goal: num(m[11]),
		})
	}
	return out, sc.Err()
}

// GCSummary describes the GC cycles of one phase.
type GCSummary struct {
	Phase                    string
	Window                   time.Duration
	Cycles                   int
	MarkP50, MarkMax         time.Duration // concurrent mark, wall clock
	STWMax                   time.Duration // the longer of the two pauses
	MarkCPU                  time.Duration // all mark CPU in the window
	LiveMin, LiveMax, GoalMB int
}

// summarizeGC summarizes the cycles that started in [from, to) since the
// process started.
func summarizeGC(phase string, cycles []gcCycle, from, to time.Duration) GCSummary {
	s := GCSummary{Phase: phase, Window: to - from, LiveMin: -1}
	var marks []time.Duration
	for _, c := range cycles {
		if c.At < from || c.At >= to {
			continue
		}
		s.Cycles++
		marks = append(marks, c.Mark)
		s.STWMax = max(s.STWMax, c.STW1, c.STW2)
		s.MarkCPU += c.AssistCPU + c.BgCPU + c.IdleC
		if s.LiveMin < 0 || c.Live < s.LiveMin {
			s.LiveMin = c.Live
		}
		s.LiveMax = max(s.LiveMax, c.Live)
		s.GoalMB = c.Goal
	}
	if len(marks) > 0 {
		slices.Sort(marks)
		s.MarkP50, s.MarkMax = marks[len(marks)/2], marks[len(marks)-1]
	}
	if s.LiveMin < 0 {
		s.LiveMin = 0
	}
	return s
}
