package bucket

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// KeyKind says what a client key is. API keys and IP addresses are separate
// namespaces: a request cannot spend another client's tokens by sending its
// IP address as an API key.
type KeyKind uint8

// The key kinds.
const (
	KeyIP  KeyKind = iota // the client's IP address
	KeyAPI                // the value of the API key header
)

// String returns "ip" or "key", the words the access log uses.
func (k KeyKind) String() string {
	if k == KeyAPI {
		return "key"
	}
	return "ip"
}

// DefaultMaxKeyLen is the longest client key accepted when Gate.MaxKeyLen
// is zero, in bytes. It also bounds keys in the clients file and admin API.
const DefaultMaxKeyLen = 256

// Gate is the per-request admission: it finds the client key, takes a token
// and answers 429 (or 400 for a bad key) itself. Set the fields before first
// use and do not change them after; do not copy a Gate after first use. The
// zero value is not usable: Limiter and ClientIP are required. A Gate is
// safe for concurrent use.
type Gate struct {
	Limiter        *Limiter                       // required
	KeyHeader      string                         // e.g. "X-API-Key"; "" keys by IP only
	MaxKeyLen      int                            // longest KeyHeader value in bytes; 0: DefaultMaxKeyLen; longer is a 400
	ClientIP       func(*http.Request) netip.Addr // required: the client's IP address (invalid: one shared client)
	HeadersOnAdmit bool                           // also send RateLimit-Policy and RateLimit on admitted answers
	// UnlistedKeysByIP keys a request whose API key has no limits of its
	// own (is not in the clients file) by its IP address instead, as if it
	// carried no key. The key header is whatever the client says: unless
	// something in front of the balancer authenticates keys, a client can
	// send a fresh made-up key with every request and get a fresh full
	// bucket each time. With this set, only listed keys have buckets, and
	// made-up keys neither bypass the limit nor fill the table. Off by
	// default: every key its own bucket, as the configuration contract says.
	UnlistedKeysByIP bool

	hdr atomic.Pointer[headerName] // KeyHeader in canonical form, computed once
}

type headerName struct{ raw, canon string }

// Verdict is what Check decided, for the caller and its access log.
type Verdict struct {
	Allowed bool       // pass the request on
	Status  int        // 0 when allowed; else the status Check already answered with (429 or 400)
	Kind    KeyKind    // what Key is
	Key     string     // the API key (Kind KeyAPI); a secret: log LogKey, not Key
	Addr    netip.Addr // the client's address (Kind KeyIP)
}

// LogKey returns the client key as it may be logged: an IP address as is,
// an API key as its KeyTag.
func (v Verdict) LogKey() string {
	if v.Kind == KeyAPI {
		return KeyTag(v.Key)
	}
	return v.Addr.String()
}

// KeyTag returns a short stable tag of an API key for logs: the first 8 hex
// digits of its SHA-256. Keys are secrets and are never logged verbatim.
func KeyTag(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:4])
}

// Check admits or rejects r. The client key is the KeyHeader value when the
// request has a non-empty one, else ClientIP(r) (IPv6: its prefix, see
// Config.IPv6Prefix). A repeated or over-long KeyHeader is answered 400. When it returns with
// Allowed false it has written the answer and the request must go no
// further. For a known client with HeadersOnAdmit false the admitted path
// allocates nothing beyond what ClientIP does.
func (g *Gate) Check(w http.ResponseWriter, r *http.Request) Verdict {
	v := Verdict{Kind: KeyIP}
	// A spelling with '_' (X_API_Key) is the same field to CGI, WSGI, PHP
	// and Rack backends, and not to this: the balancer's fronts leave such
	// names out (lb/h1's parseFields), as nginx does.
	if name := g.keyHeader(); name != "" {
		if vs := r.Header[name]; len(vs) > 1 {
			// The limiter would count one value while the backend sees all:
			// a client could send a fresh first one each time.
			writeError(w, http.StatusBadRequest, g.KeyHeader+" header is repeated; send it once")
			v.Kind, v.Status = KeyAPI, http.StatusBadRequest
			return v
		} else if key := trimOWS(firstOf(vs)); key != "" { // what the backend gets, from HTTP/2 too
			v.Kind = KeyAPI
			if strings.IndexByte(key, ',') >= 0 {
				// "a, b" is how a list is sent on one line, and means what
				// two lines do (RFC 9110 section 5.3).
				writeError(w, http.StatusBadRequest, g.KeyHeader+" header holds a list (a comma); send one key")
				v.Status = http.StatusBadRequest
				return v
			}
			if max := g.maxKeyLen(); len(key) > max {
				writeError(w, http.StatusBadRequest, g.KeyHeader+" header is longer than "+strconv.Itoa(max)+" bytes")
				v.Status = http.StatusBadRequest
				return v
			}
			v.Key = key
			if g.UnlistedKeysByIP && !g.Limiter.HasLimits(KeyAPI, v.Key) {
				v.Kind, v.Key = KeyIP, ""
			}
		}
	}
	var ok, shared bool
	var t uint64
	var p *params
	if v.Kind == KeyIP {
		a := g.ClientIP(r)
		ok, t, p, shared = g.Limiter.takeAddr(a)
		v.Addr = a
	} else {
		ok, t, p, shared = g.Limiter.takeKind(KeyAPI, v.Key)
	}
	if ok {
		if g.HeadersOnAdmit {
			SetHeaders(w.Header(), p.decide(ok, t, shared))
		}
		v.Allowed = true
		return v
	}
	WriteLimited(w, p.decide(ok, t, shared))
	v.Status = http.StatusTooManyRequests
	return v
}

// Wrap returns a handler that runs Check and passes admitted requests to next.
func (g *Gate) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g.Check(w, r).Allowed {
			next.ServeHTTP(w, r)
		}
	})
}

func (g *Gate) keyHeader() string {
	if g.KeyHeader == "" {
		return ""
	}
	if h := g.hdr.Load(); h != nil && h.raw == g.KeyHeader {
		return h.canon
	}
	h := &headerName{g.KeyHeader, http.CanonicalHeaderKey(g.KeyHeader)}
	g.hdr.Store(h)
	return h.canon
}

// trimOWS trims spaces and tabs (RFC 9110's optional whitespace), as the
// backend client does before it writes a value: an HTTP/2 client may send
// "K " and "K\t", which are K to the backend and must be K here.
func trimOWS(s string) string { return strings.Trim(s, " \t") }

// firstOf returns vs's first value, or "".
func firstOf(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}

func (g *Gate) maxKeyLen() int {
	if g.MaxKeyLen > 0 {
		return g.MaxKeyLen
	}
	return DefaultMaxKeyLen
}

// SetHeaders sets the rate-limit fields of draft-ietf-httpapi-ratelimit-headers
// from d, e.g.
//
//	RateLimit-Policy: "default";q=100;w=2
//	RateLimit: "default";r=99;t=1
//
// q is the capacity, w the window capacity/refill_rate in seconds, r the
// tokens left and t the seconds until the bucket is full again. The policy is
// named "client" when the client has its own limits.
func SetHeaders(h http.Header, d Decision) {
	name := `"default"`
	if d.Override {
		name = `"client"`
	}
	// Both values in one string and both slices in one array: two
	// allocations for the two fields.
	var buf [96]byte
	b := append(buf[:0], name...)
	b = append(b, ";q="...)
	b = strconv.AppendInt(b, d.Limit, 10)
	b = append(b, ";w="...)
	b = strconv.AppendInt(b, max(seconds(d.Window), 1), 10)
	cut := len(b)
	b = append(b, name...)
	b = append(b, ";r="...)
	b = strconv.AppendInt(b, d.Remaining, 10)
	b = append(b, ";t="...)
	b = strconv.AppendInt(b, seconds(d.Reset), 10)
	both := string(b)
	vals := []string{both[:cut], both[cut:]}
	h["Ratelimit-Policy"] = vals[0:1:1] // canonical keys: nothing to canonicalise
	h["Ratelimit"] = vals[1:2:2]
}

// WriteLimited answers 429 for d: Retry-After in whole seconds (at least 1,
// from the client's own refill rate), the rate-limit fields and
// {"error": "rate limit exceeded", "retry_after": N}.
func WriteLimited(w http.ResponseWriter, d Decision) {
	ra := max(seconds(d.RetryAfter), 1)
	h := w.Header()
	SetHeaders(h, d)
	h.Set("Retry-After", strconv.FormatInt(ra, 10))
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusTooManyRequests)
	var buf [64]byte
	b := append(buf[:0], `{"error":"rate limit exceeded","retry_after":`...)
	b = strconv.AppendInt(b, ra, 10)
	b = append(b, "}\n"...)
	w.Write(b)
}

// seconds rounds d up to whole seconds.
func seconds(d time.Duration) int64 {
	s := int64(d / time.Second)
	if d%time.Second > 0 {
		s++
	}
	return s
}

// writeError answers status with {"error": msg}.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, struct {
		Error string `json:"error"`
	}{msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil { // only plain structs and maps of them are written
		status, body = http.StatusInternalServerError, []byte(`{"error":"encoding the answer failed"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}
