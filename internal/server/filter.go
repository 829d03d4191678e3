package server

import (
	"context"
	"time"
)

const (
	// filterLoadTimeout bounds one load of the membership filter: ten
	// million keys read in well under a minute.
	filterLoadTimeout = 5 * time.Minute
	// filterRetry is the pause after a failed load.
	filterRetry = 5 * time.Second
)

// keepFilter loads the cache's membership filter once the watcher relays
// changes (a key created after the load began must be announced to it),
// and loads it again whenever the cache asks: the filter is full, or
// changes were lost. Until a load succeeds, unknown tokens are looked up
// in the store as they were without a filter.
func (s *Server) keepFilter(ctx context.Context) {
	select {
	case <-s.watcher.Started():
	case <-ctx.Done():
		return
	}
	for {
		start := time.Now()
		lctx, cancel := context.WithTimeout(ctx, filterLoadTimeout)
		err := s.cache.LoadFilter(lctx, s.db)
		cancel()
		var retry <-chan time.Time
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("membership filter: load failed; retrying (meanwhile the filter in force, if any, is used, else unknown tokens are looked up)", "err", err)
			retry = time.After(filterRetry)
		} else {
			st := s.cache.Stats()
			s.log.Info("membership filter loaded", "keys", st.FilterEntries, "bytes", st.FilterBytes, "took", time.Since(start).Round(time.Millisecond))
		}
		select {
		case <-ctx.Done():
			return
		case <-s.cache.FilterWanted():
		case <-retry:
		}
	}
}
