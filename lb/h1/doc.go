// Package h1 is the balancer's hand-written HTTP/1.1: the front Server
// that reads clients' requests, and the Client that sends requests to a
// backend and reads its answers over connections kept in an idle pool.
// It holds the code whose mistakes would be a proxy's worst (one client's
// answer reaching another, a request smuggled past the balancer) in one
// place, apart from the balancing in package lb.
//
// # Invariants
//
// Plain, on the front. A request is served when its head is plain: a
// request line "METHOD SP target SP HTTP/1.1" (or HTTP/1.0) with single
// spaces, a token method and a target without spaces or control bytes
// that is a path (no fragment), an absolute http(s) URL, or "*" for
// OPTIONS; field
// lines "name: value" ending in CRLF, the name a token followed at once by
// its colon, the value free of control bytes but HTAB; exactly one valid
// Host on HTTP/1.1; and framing that cannot be read two ways: a
// Content-Length of plain decimal digits given once, or a
// Transfer-Encoding of "chunked" alone given once, never both, and no
// Transfer-Encoding on HTTP/1.0. Empty lines before a request are skipped
// (RFC 9112 section 2.2). Anything else is refused before any handler
// runs, with a JSON error, and the connection is closed after it:
//
//	400  malformed head, bare LF or CR, obs-fold, whitespace before a
//	     colon, control bytes, Host missing, repeated or invalid, both
//	     Content-Length and Transfer-Encoding, a repeated or unreadable
//	     Content-Length, Transfer-Encoding on HTTP/1.0 or malformed, a
//	     fragment or bad escape in the target, an HTTP/2 preface
//	417  Expect other than 100-continue
//	414  a request line alone over MaxHeaderBytes
//	431  more than 100 fields, or a head over MaxHeaderBytes
//	400  a Transfer-Encoding whose final coding is not chunked
//	501  codings before a final chunked (gzip, chunked); CONNECT
//	505  an HTTP version other than 1.1 and 1.0
//
// A chunked body is decoded strictly (see chunkedReader): a size of one
// to 16 hex digits, extensions of token names and token or quoted values
// with whitespace only around ';' and '=', CRLF after every line and
// after every chunk's data, a trailer section read as header fields are.
// A body that breaks its framing, or ends with the connection, fails the
// read with a *RequestBodyError: the handler answers 400.
//
// One request's body is read only while its handler runs. The handler
// may give it to another goroutine (the backend client streams it to the
// backend while the answer comes back: full duplex), but when the handler
// returns, a read still waiting for the client is interrupted and waited
// for, and every later read fails. A body that was not read to its end,
// or broke, ends the connection: the answer says Connection: close, and
// the server stops writing, drops what the client still sends for up to
// two seconds (so that a reset does not destroy the answer), and closes.
// What is left of a body is never parsed as a request.
//
// Plain, on the back. An answer is taken when its status line is
// "HTTP/1.x DDD reason" and its head follows the same field rules, and its
// framing is unambiguous: Content-Length of plain digits once, or
// Transfer-Encoding "chunked" alone once, never both, no Transfer-Encoding
// in HTTP/1.0; at most five interim (1xx) answers, and a 101 only when the
// request asked to upgrade (to WebSocket: with the Sec-WebSocket-Accept
// that answers its key); no interim answer announcing a body. HEAD,
// 1xx, 204 and 304 answers have no body whatever their fields say; a 204
// that announces one is the connection's last.
// Anything else is refused: Client.RoundTrip fails with an *Error of
// KindProtocol (the balancer answers 502), and the connection is closed.
//
// Nothing else is sent either: Client.RoundTrip writes a request only when
// CheckRequest finds its method a token other than CONNECT, its target
// plain (* only for OPTIONS; a query free of spaces, control bytes and
// '#') and its Host a plain host, since a request that did not come
// through Server (HTTP/2 carries a method as any string) would otherwise
// put the client's bytes into the request line, or open a tunnel.
//
// Reuse. A backend connection goes back to the idle pool only after a
// plain, fully consumed exchange: the answer read to the end of its
// framing, on HTTP/1.1 without Connection: close, the request's body (if
// any) sent whole, and not one byte buffered past the answer. Taken from
// the pool, it is checked once more with a non-blocking peek of its
// socket: bytes that arrived while it sat idle (a second answer, a stray
// line) or an end of file close it, and unasked bytes are reported to
// Client.OnDiscard. Everything else is a connection's last exchange.
//
// # Files
//
//	wire.go       reading a head, field lines, tokens, writing a field
//	request.go    a request head, taken apart and checked
//	response.go   a response head, taken apart and checked; Scratch
//	chunked.go    the strict chunked decoder and encoder
//	errors.go     Error, its Kind, RequestBodyError
//	server.go     Server: accepting, shutting down, HTTP/2 handoff
//	srvconn.go    one client connection: the request loop, the hang-up
//	              watch, refusals, lingering close, hijacking
//	srvbody.go    a request body and when it may be read
//	srvresp.go    the ResponseWriter
//	client.go     Client: dialing (TLS for https), retrying a stale
//	              connection, the idle pool's use
//	clientconn.go one backend connection: writing a request, streaming
//	              its body, reading the answer, releasing the connection
//	idle.go       the idle pool, a stack per backend
//	peek.go       the check of an idle connection before reuse
//
// The differential fuzzers FuzzServerParse and FuzzParseResponse check that
// what the parsers accept, net/http accepts too and reads the same way:
// this package is a strict subset of what net/http allows.
package h1
