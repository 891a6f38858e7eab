package bucket

import (
	"context"
	"maps"
	"time"
)

// InvalidError is a change refused for what it says (a bad key or bad
// limits), as opposed to a failure to store it.
type InvalidError struct{ Err error }

func (e *InvalidError) Error() string { return e.Err.Error() }
func (e *InvalidError) Unwrap() error { return e.Err }

// Put lists the client key with lim, durably before it returns, and
// applies it to the Limiter. It returns the key in canonical form. Errors:
// *InvalidError for a bad key or limits, ErrChangedOnDisk (wrapped), or a
// failure to write; on error nothing has changed.
func (s *Store) Put(key string, lim Limits) (string, error) {
	c, err := s.l.checkKey(key)
	if err == nil {
		err = s.l.Check(lim)
	}
	if err != nil {
		return "", &InvalidError{err}
	}
	_, err = s.change(c, &lim)
	return c, err
}

// Delete unlists the client key, durably before it returns, and reports
// whether it was listed. Errors as for Put.
func (s *Store) Delete(key string) (canonical string, existed bool, err error) {
	c, err := s.l.checkKey(key)
	if err != nil {
		return "", false, &InvalidError{err}
	}
	existed, err = s.change(c, nil)
	return c, existed, err
}

func (s *Store) change(key string, lim *Limits) (existed bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, existed := s.m[key]
	if lim == nil && !existed {
		return false, nil
	}
	if why := s.diskChange(); why != "" {
		return existed, s.conflict(why)
	}
	if s.log == nil {
		if err := s.newLog(nil); err != nil {
			return existed, err
		}
	}
	r := logRecord{Seq: s.seq + 1, Key: key, Set: lim}
	if existed {
		r.Old = &old
	}
	if err := s.appendLog(r); err != nil {
		return existed, err
	}
	s.seq++
	s.recent = append(s.recent, r)
	if lim != nil {
		s.m[key] = *lim
		s.l.SetLimits(key, *lim)
	} else {
		delete(s.m, key)
		s.l.ClearLimits(key)
	}
	select {
	case s.kick <- struct{}{}:
	default:
	}
	return existed, nil
}

// Changes counts what a Replace did to the listed clients.
type Changes struct {
	Added   int // listed, and were not
	Changed int // listed before with other limits
	Removed int // no longer listed
}

// Replace makes m the whole set of listed clients, atomically and durably
// (a new clients file), applies it to the Limiter, and returns what it
// changed. Keys in any spelling; two spellings of one client, a bad key or
// bad limits are an *InvalidError listing every problem. Other errors as
// for Put.
func (s *Store) Replace(m map[string]Limits) (Changes, error) {
	next, err := parseClients(encodeClients(m), s.l)
	if err != nil {
		return Changes{}, &InvalidError{err}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if why := s.diskChange(); why != "" {
		return Changes{}, s.conflict(why)
	}
	if err := s.install(encodeClients(next), "", s.seq); err != nil {
		return Changes{}, err
	}
	var c Changes
	for k, lim := range next {
		if old, ok := s.m[k]; !ok {
			c.Added++
		} else if old != lim {
			c.Changed++
		}
	}
	c.Removed = len(s.m) - (len(next) - c.Added)
	s.m = next
	s.l.SetOverrides(next)
	return c, nil
}

// Reload re-reads the clients file and its log (on SIGHUP) and applies the
// set to the Limiter. On error the Store and the Limiter keep what they had.
func (s *Store) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.load()
}

// Run folds the change log into the clients file a second after changes
// stop, or after every 4096 changes, until ctx ends; then it folds once
// more and returns nil. Failures are logged at ERROR and retried with the
// next change: the log still holds every change.
func (s *Store) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			s.compact()
			return nil
		case <-s.kick:
		}
		quiet := time.NewTimer(s.compactAfter)
	wait:
		for {
			select {
			case <-ctx.Done():
				break wait
			case <-quiet.C:
				break wait
			case <-s.kick:
				s.mu.Lock()
				n := len(s.recent)
				s.mu.Unlock()
				if n >= s.compactEvery {
					break wait
				}
				quiet.Reset(s.compactAfter)
			}
		}
		quiet.Stop()
		s.compact()
	}
}

// compact writes the current set as the clients file, the slow part
// outside the mutex so that changes go on meanwhile.
func (s *Store) compact() {
	s.mu.Lock()
	if len(s.recent) == 0 || s.log == nil {
		s.mu.Unlock()
		return
	}
	if why := s.diskChange(); why != "" {
		s.conflict(why) // logged once; the file is not touched until a reload
		s.mu.Unlock()
		return
	}
	snap, through, file := maps.Clone(s.m), s.seq, s.file
	s.mu.Unlock()

	data := encodeClients(snap)
	dir, tmpPrefix := tempPlace(file)
	tmp, err := writeFileSync(dir, tmpPrefix, data)
	if err != nil {
		s.l.log.Error("clients file: saving failed; changes stay in the change log", "clients_file", file, "err", err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.file != file || through <= s.folded || s.diskChange() != "" {
		removeFile(tmp) // another compaction or a Replace got there first
		return
	}
	if err := s.install(data, tmp, through); err != nil {
		s.l.log.Error("clients file: saving failed; changes stay in the change log", "clients_file", file, "err", err)
	}
}
