package bucket

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// Store is the durable set of per-client limits: the clients file, in the
// form {"clients": {"<key>": {"capacity": 10, "refill_rate": 1}, ...}} with
// keys sorted. Every change is on disk before the method returns: written to
// a temporary file in the same directory, fsynced, renamed over the file and
// the directory fsynced, so a crash leaves the old file or the new one, never
// a torn one. The file is created with mode 0600: it names API keys.
//
// Create a Store with OpenStore; the zero value is not usable. A Store is
// safe for concurrent use; changes are serialised, none is lost.
type Store struct {
	path   string
	rename func(oldpath, newpath string) error // os.Rename; tests make it fail

	// mu guards m and serialises writes of the file. It is held across the
	// file I/O on purpose: that is what makes concurrent changes safe, and
	// the admin API is not on the request path.
	mu sync.Mutex
	m  map[string]Limits // never modified in place: writes build a new map
}

// OpenStore reads the clients file at path. A missing file is an empty set,
// created on the first change. A bad file is an error naming the problem,
// e.g. `clients file x.json: clients["abc"].capacity: must be a positive
// integer at most 8388608`. Temporary files left by a crash mid-write are
// removed.
func OpenStore(path string) (*Store, error) {
	m, err := readClients(path)
	if err != nil {
		return nil, err
	}
	dir, base := filepath.Split(path)
	if ents, err := os.ReadDir(filepath.Clean(dir + ".")); err == nil {
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), tempPrefix(base)) {
				os.Remove(filepath.Join(dir, e.Name()))
			}
		}
	}
	return &Store{path: path, rename: os.Rename, m: m}, nil
}

func tempPrefix(base string) string { return "." + base + ".tmp-" }

// Path returns the file the Store keeps.
func (s *Store) Path() string { return s.path }

// All returns a copy of every client's limits.
func (s *Store) All() map[string]Limits {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.m)
}

// Get returns key's limits and whether it has any.
func (s *Store) Get(key string) (Limits, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	lim, ok := s.m[key]
	return lim, ok
}

// Put sets key's limits, durably before it returns.
func (s *Store) Put(key string, lim Limits) error {
	_, err := s.update(key, &lim, nil)
	return err
}

// Delete removes key's limits, durably before it returns, and reports
// whether it had any.
func (s *Store) Delete(key string) (existed bool, err error) {
	return s.update(key, nil, nil)
}

// update sets (lim != nil) or removes key's limits, writes the file and then
// runs apply, all under mu so that the order of changes on disk and in the
// Limiter is the same. On error nothing has changed, except in one case: the
// rename succeeded but the directory fsync failed. The file then has the
// change, so the Store and apply follow it, and the error is still returned
// because durability is not confirmed.
func (s *Store) update(key string, lim *Limits, apply func()) (existed bool, err error) {
	if err := ValidateKey(key); err != nil {
		return false, err
	}
	if lim != nil {
		if err := lim.Validate(); err != nil {
			return false, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, existed = s.m[key]
	if lim == nil && !existed {
		return false, nil
	}
	next := maps.Clone(s.m)
	if lim != nil {
		next[key] = *lim
	} else {
		delete(next, key)
	}
	renamed, err := s.write(next)
	if renamed {
		s.m = next
		if apply != nil {
			apply()
		}
	}
	return existed, err
}

// Reload re-reads the file (on SIGHUP) and returns its contents. On error
// the Store keeps the set it had.
func (s *Store) Reload() (map[string]Limits, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := readClients(s.path)
	if err != nil {
		return nil, err
	}
	s.m = m
	return maps.Clone(m), nil
}

// ReloadInto is Reload followed by l.SetOverrides, with no admin change
// able to slip in between. Use it on SIGHUP (and at start) rather than
// Reload and SetOverrides apart. On error neither changes.
func (s *Store) ReloadInto(l *Limiter) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := readClients(s.path)
	if err != nil {
		return err
	}
	s.m = m
	l.SetOverrides(m)
	return nil
}

// write replaces the file with m atomically and durably and reports whether
// the new file took the old one's place. Caller holds mu.
func (s *Store) write(m map[string]Limits) (renamed bool, err error) {
	data, err := json.MarshalIndent(clientsFile{m}, "", "  ")
	if err != nil {
		return false, fmt.Errorf("clients file %s: %w", s.path, err)
	}
	dir, base := filepath.Split(s.path)
	dir = filepath.Clean(dir + ".")
	f, err := os.CreateTemp(dir, tempPrefix(base)+"*")
	if err != nil {
		return false, fmt.Errorf("clients file %s: %w", s.path, err)
	}
	defer func() {
		if err != nil {
			if !renamed {
				os.Remove(f.Name())
			}
			err = fmt.Errorf("clients file %s: %w", s.path, err)
		}
	}()
	_, err = f.Write(append(data, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false, err
	}
	if err = s.rename(f.Name(), s.path); err != nil {
		return false, err
	}
	// The rename is only durable once the directory entry is.
	d, err := os.Open(dir)
	if err != nil {
		return true, err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return true, err
}

type clientsFile struct {
	Clients map[string]Limits `json:"clients"`
}

// readClients reads the clients file at path. A bad file's error has one
// line per problem, each naming the file (errors.Join of them all), so an
// operator fixes every entry in one pass.
func readClients(path string) (map[string]Limits, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]Limits{}, nil
	}
	errs := []error{err}
	if err == nil {
		var m map[string]Limits
		if m, errs = parseClients(data); len(errs) == 0 {
			return m, nil
		}
	}
	for i, err := range errs {
		errs[i] = fmt.Errorf("clients file %s: %w", path, err)
	}
	return nil, errors.Join(errs...)
}

// parseClients reads a clients file strictly: unknown fields, bad keys and
// bad limits are errors with the path of the field, one for each bad
// entry. An empty file is an empty set.
func parseClients(data []byte) (map[string]Limits, []error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return map[string]Limits{}, nil
	}
	var f struct {
		Clients map[string]json.RawMessage `json:"clients"`
	}
	if err := decodeStrict(data, &f); err != nil {
		return nil, []error{err}
	}
	m := make(map[string]Limits, len(f.Clients))
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(f.Clients)) {
		if err := ValidateKey(k); err != nil {
			errs = append(errs, fmt.Errorf("clients[%q]: %w", k, err))
			continue
		}
		lim, err := ParseLimits(f.Clients[k])
		if err != nil {
			sep := ": "
			if msg := err.Error(); strings.HasPrefix(msg, "capacity:") || strings.HasPrefix(msg, "refill_rate:") {
				sep = "."
			}
			errs = append(errs, fmt.Errorf("clients[%q]%s%w", k, sep, err))
			continue
		}
		m[k] = lim
	}
	return m, errs
}

// ParseLimits reads {"capacity": 10, "refill_rate": 1} strictly: both fields
// required, capacity an integer literal, no other fields. Errors start with
// the field name ("capacity: must be a positive integer ...").
func ParseLimits(data []byte) (Limits, error) {
	var v struct {
		Capacity   json.RawMessage `json:"capacity"`
		RefillRate json.RawMessage `json:"refill_rate"`
	}
	var lim Limits
	if err := decodeStrict(data, &v); err != nil {
		return lim, err
	}
	if len(v.Capacity) == 0 || string(v.Capacity) == "null" {
		return lim, errors.New("capacity: required")
	}
	if len(v.RefillRate) == 0 || string(v.RefillRate) == "null" {
		return lim, errors.New("refill_rate: required")
	}
	c, err := strconv.ParseInt(string(v.Capacity), 10, 64)
	if err != nil || c < 1 || c > MaxCapacity {
		return lim, errors.New("capacity: must be a positive integer at most 8388608")
	}
	r, err := strconv.ParseFloat(string(v.RefillRate), 64)
	if err != nil || !(r > 0) || math.IsInf(r, 0) {
		return lim, errors.New("refill_rate: must be a positive number")
	}
	lim = Limits{Capacity: c, RefillRate: r}
	return lim, lim.Validate()
}

// decodeStrict decodes one JSON object into v, refusing unknown fields and
// trailing data, with errors a person can read.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field == "" {
			return fmt.Errorf("must be a JSON object, not %s", te.Value)
		} else if te != nil {
			return fmt.Errorf("%s: must be a JSON object, not %s", te.Field, te.Value)
		}
		var se *json.SyntaxError
		if errors.As(err, &se) {
			// Where, as an editor counts: the Offset-th byte is the bad one.
			before := data[:max(0, min(int(se.Offset)-1, len(data)))]
			col := utf8.RuneCount(before[bytes.LastIndexByte(before, '\n')+1:]) + 1
			return fmt.Errorf("line %d, column %d: %v", bytes.Count(before, []byte("\n"))+1, col, err)
		}
		return errors.New(strings.TrimPrefix(err.Error(), "json: "))
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("unexpected data after the JSON object")
	}
	return nil
}

// ValidateKey reports whether key can name a client: not empty, at most
// DefaultMaxKeyLen bytes, no control characters.
func ValidateKey(key string) error {
	switch {
	case key == "":
		return errors.New("key: must not be empty")
	case len(key) > DefaultMaxKeyLen:
		return fmt.Errorf("key: must be at most %d bytes", DefaultMaxKeyLen)
	case strings.ContainsFunc(key, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return errors.New("key: must not contain control characters")
	case key == "." || key == "..":
		// They cannot be addressed as /clients/{key}: HTTP path cleaning
		// turns them into other paths.
		return errors.New(`key: "." and ".." are not allowed`)
	}
	return nil
}
