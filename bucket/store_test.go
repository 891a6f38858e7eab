package bucket

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
)

func openTemp(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "clients.json")
	s, err := OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	return s, path
}

func TestStore_PersistsAcrossRestart(t *testing.T) {
	s, path := openTemp(t)
	if err := s.Put("k-1", Limits{10, 1}); err != nil {
		t.Fatal(err)
	}
	if err := s.Put("192.0.2.1", Limits{5, 0.1}); err != nil {
		t.Fatal(err)
	}
	if err := s.Put("k-1", Limits{20, 2}); err != nil {
		t.Fatal(err)
	}
	if existed, err := s.Delete("192.0.2.1"); !existed || err != nil {
		t.Fatalf("Delete = %v, %v", existed, err)
	}
	again, err := OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := again.All(), map[string]Limits{"k-1": {20, 2}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after a restart: %v, want %v", got, want)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("file mode %v (%v), want 0600: it holds API keys", fi.Mode(), err)
	}
	data, _ := os.ReadFile(path)
	if want := "{\n  \"clients\": {\n    \"k-1\": {\n      \"capacity\": 20,\n      \"refill_rate\": 2\n    }\n  }\n}\n"; string(data) != want {
		t.Fatalf("file:\n%s\nwant:\n%s", data, want)
	}
}

func TestOpenStore_MissingFileIsEmpty(t *testing.T) {
	s, path := openTemp(t)
	if len(s.All()) != 0 {
		t.Fatal("a missing file gave clients")
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("OpenStore created the file: %v", err)
	}
	if existed, err := s.Delete("nobody"); existed || err != nil {
		t.Fatalf("Delete of nothing = %v, %v", existed, err)
	}
}

func TestOpenStore_BadFile(t *testing.T) {
	tests := []struct{ content, want string }{
		{`{"clients": {"abc": {"capacity": 0, "refill_rate": 1}}}`, `clients["abc"].capacity: must be a positive integer`},
		{`{"clients": {"abc": {"capacity": 1.5, "refill_rate": 1}}}`, `clients["abc"].capacity: must be a positive integer`},
		{`{"clients": {"abc": {"capacity": "10", "refill_rate": 1}}}`, `clients["abc"].capacity: must be a positive integer`},
		{`{"clients": {"abc": {"capacity": 1, "refill_rate": -1}}}`, `clients["abc"].refill_rate: must be a positive number`},
		{`{"clients": {"abc": {"capacity": 1}}}`, `clients["abc"].refill_rate: required`},
		{`{"clients": {"abc": {"capacity": 1, "refill_rate": 1, "burst": 2}}}`, `clients["abc"]: unknown field "burst"`},
		{`{"clients": {"abc": 5}}`, `clients["abc"]: must be a JSON object, not number`},
		{`{"clients": {"": {"capacity": 1, "refill_rate": 1}}}`, `clients[""]: key: must not be empty`},
		{`{"client": {}}`, `unknown field "client"`},
		{`{"clients": {`, `unexpected EOF`},
		{`{"clients": {}} {}`, `unexpected data after the JSON object`},
	}
	for _, tt := range tests {
		path := filepath.Join(t.TempDir(), "x.json")
		os.WriteFile(path, []byte(tt.content), 0o600)
		_, err := OpenStore(path)
		if want := "clients file " + path + ": " + tt.want; err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%s: OpenStore error %v, want %q", tt.content, err, want)
		}
	}
}

func TestStore_ConcurrentPutsAllSurvive(t *testing.T) {
	s, path := openTemp(t)
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			if err := s.Put(fmt.Sprint("k-", i), Limits{int64(i + 1), 1}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	again, err := OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	got := again.All()
	for i := range 40 {
		if lim := got[fmt.Sprint("k-", i)]; lim.Capacity != int64(i+1) {
			t.Errorf("k-%d = %+v: lost", i, lim)
		}
	}
}

func TestStore_FailedRenameLeavesOldFile(t *testing.T) {
	s, path := openTemp(t)
	if err := s.Put("k-1", Limits{10, 1}); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	s.rename = func(string, string) error { return errors.New("disk on fire") }
	if err := s.Put("k-1", Limits{99, 9}); err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("Put = %v, want the rename error", err)
	}
	if _, err := s.Delete("k-1"); err == nil {
		t.Fatal("Delete succeeded with a failing rename")
	}
	after, _ := os.ReadFile(path)
	if string(before) != string(after) {
		t.Fatalf("file changed by a failed write:\n%s", after)
	}
	if lim, _ := s.Get("k-1"); lim != (Limits{10, 1}) {
		t.Fatalf("Get = %+v after a failed write, want the old limits", lim)
	}
	ents, _ := os.ReadDir(filepath.Dir(path))
	if len(ents) != 1 {
		t.Fatalf("directory holds %d files, want the clients file alone: temp files leak", len(ents))
	}
}

func TestOpenStore_IgnoresTornTempFile(t *testing.T) {
	s, path := openTemp(t)
	s.Put("k-1", Limits{10, 1})
	// A crash mid-write leaves a partial temp file beside the intact one.
	torn := filepath.Join(filepath.Dir(path), ".clients.json.tmp-12345")
	os.WriteFile(torn, []byte(`{"clients": {"k-1": {"capac`), 0o600)
	again, err := OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	if lim, _ := again.Get("k-1"); lim != (Limits{10, 1}) {
		t.Fatalf("Get = %+v, want the last complete write", lim)
	}
	if _, err := os.Stat(torn); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("leftover temp file not removed: %v", err)
	}
}

func TestStore_ReloadKeepsOldSetOnError(t *testing.T) {
	s, path := openTemp(t)
	s.Put("k-1", Limits{10, 1})
	l := New(Config{})
	os.WriteFile(path, []byte(`{"clients": {"k-2": {"capacity": 0, "refill_rate": 1}}}`), 0o600)
	if _, err := s.Reload(); err == nil {
		t.Fatal("Reload of a bad file succeeded")
	}
	if err := s.ReloadInto(l); err == nil {
		t.Fatal("ReloadInto of a bad file succeeded")
	}
	if got := s.All(); !reflect.DeepEqual(got, map[string]Limits{"k-1": {10, 1}}) {
		t.Fatalf("after a failed reload: %v, want the old set", got)
	}
	os.WriteFile(path, []byte(`{"clients": {"k-2": {"capacity": 3, "refill_rate": 1}}}`), 0o600)
	if err := s.ReloadInto(l); err != nil {
		t.Fatal(err)
	}
	if d := l.TakeKind(KeyAPI, "k-2"); d.Limit != 3 {
		t.Fatalf("after ReloadInto: Limit %d, want 3", d.Limit)
	}
	if _, ok := s.Get("k-1"); ok {
		t.Fatal("k-1 survived a reload of a file without it")
	}
}

func TestValidateKey(t *testing.T) {
	for key, want := range map[string]string{
		"k-1":                    "",
		"2001:db8::1":            "",
		"":                       "key: must not be empty",
		strings.Repeat("k", 257): "key: must be at most 256 bytes",
		"a\nb":                   "key: must not contain control characters",
	} {
		if got := errString(ValidateKey(key)); got != want {
			t.Errorf("ValidateKey(%.20q) = %q, want %q", key, got, want)
		}
	}
}
