package anomaly

import (
	"cmp"
	"context"
	"hash/maphash"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/tollgate/tollgate/internal/policy"
)

// Decider decides requests: what the Recorder wraps (*policy.Decider).
type Decider interface {
	Decide(ctx context.Context, req *policy.Request) (policy.Decision, error)
}

// Bounds of what one replica keeps between flushes.
const (
	// slotValues is how many distinct network ranges and sites one
	// token's minute keeps; more in the same minute are seen in the next.
	slotValues = 4
	// maxCodes bounds the deny codes counted apart.
	maxCodes = 64
	// MaxSightings is how many network ranges (and, apart, sites) the
	// fleet keeps per token; a token seen from more is too diverse to
	// flag a new one.
	MaxSightings = 32
	// v4Bits and v6Bits are the network ranges addresses are kept as.
	v4Bits, v6Bits = 24, 48
	// maxSiteLen bounds a kept host name (DNS's own bound).
	maxSiteLen = 253
)

// RecorderConfig bounds a Recorder.
type RecorderConfig struct {
	// MaxTokens bounds the token-minutes kept between flushes; past it,
	// decisions about other tokens are not counted until the next flush
	// (and counted in Dropped).
	MaxTokens int
	// FlushInterval is how often counts go to the store.
	FlushInterval time.Duration
	// StoreTimeout bounds one write.
	StoreTimeout time.Duration
	// Known is how many sightings this replica remembers having written,
	// so that a value seen again costs no write.
	Known int
}

// DefaultRecorderConfig returns the defaults.
func DefaultRecorderConfig() RecorderConfig {
	return RecorderConfig{MaxTokens: 100_000, FlushInterval: 10 * time.Second, StoreTimeout: 5 * time.Second, Known: 200_000}
}

// MinuteStore is where a Recorder's counts go: *store.DB.
type MinuteStore interface {
	RecordMinutes(ctx context.Context, batch []policy.MinuteUsage, maxSightings int) error
}

// slotKey is one token's minute.
type slotKey struct {
	token  string
	minute int64 // unix minutes
}

// network is a range kept without a pointer: netip.Prefix holds one.
type network struct {
	addr [16]byte
	bits uint8 // 0: unset
	v4   bool
}

// slot is what one token did in one minute on this replica.
type slot struct {
	account                         string
	requests, denied, secretBrowser uint32
	denials                         [maxCodes]uint32
	nets                            [slotValues]network
	sites                           [slotValues]uint64 // hashes; names in window.sites
}

// shardCount is how many locks the counts are split over.
const shardCount = 16

type shard struct {
	mu  sync.Mutex
	cur *window
}

// window is what has been counted since the last flush.
type window struct {
	index map[slotKey]int32
	slots []slot
	sites map[uint64]string
}

func newWindow() *window {
	return &window{index: map[slotKey]int32{}, sites: map[uint64]string{}}
}

// Recorder counts decisions per token and minute, in bounded memory, on
// the way out of the Decider it wraps; Run writes the counts to the store.
type Recorder struct {
	inner Decider
	store MinuteStore
	cfg   RecorderConfig
	now   func() time.Time
	log   *slog.Logger
	seed  maphash.Seed
	codes map[policy.DenyCode]uint8
	names []policy.DenyCode

	// shards split the counting lock, by token, so that concurrent
	// Checks of different tokens rarely wait for each other.
	shards [shardCount]shard

	// known remembers sightings written, by hash, with when.
	known    *lru.Cache[uint64, int64]
	dropped  atomic.Uint64
	failures atomic.Uint64
}

// NewRecorder returns a Recorder around d.
func NewRecorder(d Decider, s MinuteStore, cfg RecorderConfig, now func() time.Time, log *slog.Logger) (*Recorder, error) {
	known, err := lru.New[uint64, int64](max(cfg.Known, 1))
	if err != nil {
		return nil, err
	}
	all := policy.DenyCodes()
	if len(all) > maxCodes {
		return nil, errTooManyCodes
	}
	codes := make(map[policy.DenyCode]uint8, len(all))
	for i, c := range all {
		codes[c] = uint8(i)
	}
	r := &Recorder{inner: d, store: s, cfg: cfg, now: now, log: log, seed: maphash.MakeSeed(), codes: codes, names: all, known: known}
	for i := range r.shards {
		r.shards[i].cur = newWindow()
	}
	return r, nil
}

var errTooManyCodes = &policy.Error{Code: policy.EInternal, Message: "anomaly: more deny codes than the recorder counts apart"}

// Decide implements the Decider: it decides with the wrapped one and
// counts the decision.
func (r *Recorder) Decide(ctx context.Context, req *policy.Request) (policy.Decision, error) {
	d, err := r.inner.Decide(ctx, req)
	if err == nil && d.TokenID != "" {
		r.count(req, &d)
	}
	return d, err
}

func (r *Recorder) count(req *policy.Request, d *policy.Decision) {
	key := slotKey{d.TokenID, r.now().Unix() / 60}
	net := networkOf(req.IP)
	site := siteOf(req)
	var siteHash uint64
	if site != "" {
		siteHash = maphash.String(r.seed, site)
	}
	sh := &r.shards[maphash.String(r.seed, d.TokenID)%shardCount]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	w := sh.cur
	i, ok := w.index[key]
	if !ok {
		if len(w.slots) >= r.cfg.MaxTokens/shardCount+1 {
			r.dropped.Add(1)
			return
		}
		i = int32(len(w.slots))
		w.index[key] = i
		w.slots = append(w.slots, slot{account: d.AccountID})
	}
	s := &w.slots[i]
	if d.Allow {
		s.requests++
	} else {
		s.denied++
		if c, ok := r.codes[d.Code]; ok {
			s.denials[c]++
		}
	}
	if d.Kind == policy.Secret && req.FromBrowser {
		s.secretBrowser++
	}
	if net.bits != 0 {
		for j := range s.nets {
			if s.nets[j] == net {
				break
			}
			if s.nets[j].bits == 0 {
				s.nets[j] = net
				break
			}
		}
	}
	if siteHash != 0 {
		for j := range s.sites {
			if s.sites[j] == siteHash {
				break
			}
			if s.sites[j] == 0 {
				s.sites[j] = siteHash
				if _, ok := w.sites[siteHash]; !ok && len(w.sites) < r.cfg.MaxTokens/shardCount+1 {
					w.sites[siteHash] = site
				}
				break
			}
		}
	}
}

// networkOf returns the /24 or /48 an address is in.
func networkOf(ip netip.Addr) network {
	if !ip.IsValid() {
		return network{}
	}
	ip = ip.Unmap()
	bits := v6Bits
	if ip.Is4() {
		bits = v4Bits
	}
	p, err := ip.Prefix(bits)
	if err != nil {
		return network{}
	}
	return network{addr: p.Addr().As16(), bits: uint8(bits), v4: ip.Is4()}
}

func (n network) String() string {
	a := netip.AddrFrom16(n.addr)
	if n.v4 {
		a = a.Unmap()
	}
	return netip.PrefixFrom(a, int(n.bits)).String()
}

// siteOf returns the host a browser's request came from: Origin's, else
// Referer's; "" when neither names one. It reads the host in place rather
// than parsing a URL, so that counting allocates nothing on the Check path;
// the host is only a label for a sighting, never a decision.
func siteOf(req *policy.Request) string {
	for _, v := range []string{req.Origin, req.Referer} {
		if h := hostOf(v); h != "" {
			return h
		}
	}
	return ""
}

// hostOf returns the host of an absolute http(s) URL, lower-cased, without
// user information or port; "" for anything else.
func hostOf(v string) string {
	_, rest, ok := strings.Cut(v, "://")
	if !ok {
		return ""
	}
	if end := strings.IndexAny(rest, "/?#"); end >= 0 {
		rest = rest[:end]
	}
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		rest = rest[at+1:]
	}
	if strings.HasPrefix(rest, "[") {
		if end := strings.IndexByte(rest, ']'); end > 0 {
			rest = rest[1:end]
		} else {
			return ""
		}
	} else if colon := strings.IndexByte(rest, ':'); colon >= 0 {
		rest = rest[:colon]
	}
	if rest == "" || len(rest) > maxSiteLen {
		return ""
	}
	for i := 0; i < len(rest); i++ {
		if c := rest[i]; c <= ' ' || c >= 0x7f {
			return ""
		}
	}
	return strings.ToLower(rest)
}

// Dropped returns the decisions not counted because the window was full.
func (r *Recorder) Dropped() uint64 { return r.dropped.Load() }

// Failures returns the flushes that could not be written.
func (r *Recorder) Failures() uint64 { return r.failures.Load() }

// Run flushes every interval until ctx ends, then once more.
func (r *Recorder) Run(ctx context.Context) {
	t := time.NewTicker(r.cfg.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			r.Flush(context.WithoutCancel(ctx))
			return
		case <-t.C:
			r.Flush(ctx)
		}
	}
}

// knownFor is how long a written sighting is not written again; it moves
// last_seen, which only pruning reads.
const knownFor = time.Hour

// Flush writes what was counted since the last flush. A write that fails
// loses that flush's counts (logged and counted): they only ever feed
// flags, never a decision, and holding them would let an outage grow the
// replica's memory.
func (r *Recorder) Flush(ctx context.Context) {
	windows := make([]*window, 0, shardCount)
	rows := 0
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		if len(sh.cur.slots) > 0 {
			windows = append(windows, sh.cur)
			rows += len(sh.cur.slots)
			sh.cur = newWindow()
		}
		sh.mu.Unlock()
	}
	if rows == 0 {
		return
	}
	now := r.now().Unix()
	batch := make([]policy.MinuteUsage, 0, rows)
	var written []uint64
	for _, w := range windows {
		batch, written = r.rows(w, now, batch, written)
	}
	// Replicas write in the same order, so their row locks never cross.
	slices.SortFunc(batch, func(a, b policy.MinuteUsage) int {
		return cmp.Or(cmp.Compare(a.TokenID, b.TokenID), a.Minute.Compare(b.Minute))
	})
	wctx, cancel := context.WithTimeout(ctx, r.cfg.StoreTimeout)
	defer cancel()
	if err := r.store.RecordMinutes(wctx, batch, MaxSightings); err != nil {
		r.failures.Add(1)
		r.log.Warn("anomaly: usage minutes not written; this flush's counts are lost to anomaly flags (never to billing)",
			"rows", len(batch), "err", err)
		return
	}
	for _, h := range written {
		r.known.Add(h, now)
	}
}

// rows turns a window's slots into rows to write, leaving out the
// sightings this replica wrote within knownFor, and notes the sightings
// it is about to write.
func (r *Recorder) rows(w *window, now int64, batch []policy.MinuteUsage, written []uint64) ([]policy.MinuteUsage, []uint64) {
	for key, i := range w.index {
		s := &w.slots[i]
		u := policy.MinuteUsage{TokenID: key.token, AccountID: s.account, Minute: time.Unix(key.minute*60, 0).UTC(),
			Requests: int64(s.requests), Denied: int64(s.denied), SecretBrowser: int64(s.secretBrowser)}
		for c, n := range s.denials {
			if n > 0 {
				if u.Denials == nil {
					u.Denials = map[policy.DenyCode]int64{}
				}
				u.Denials[r.names[c]] = int64(n)
			}
		}
		keep := func(kind, value string) bool {
			h := maphash.String(r.seed, key.token+"\x00"+kind+"\x00"+value)
			if at, ok := r.known.Get(h); ok && now-at < int64(knownFor/time.Second) {
				return false
			}
			written = append(written, h)
			return true
		}
		for _, n := range s.nets {
			if n.bits != 0 && keep("network", n.String()) {
				u.Networks = append(u.Networks, n.String())
			}
		}
		for _, h := range s.sites {
			if name, ok := w.sites[h]; ok && h != 0 && keep("site", name) {
				u.Sites = append(u.Sites, name)
			}
		}
		batch = append(batch, u)
	}
	return batch, written
}
