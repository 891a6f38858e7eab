package load

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
)

// ErrorKind is the class a failed request is counted under.
type ErrorKind int

// The error kinds, in report order.
const (
	// Refused: nothing listens (ECONNREFUSED).
	Refused ErrorKind = iota
	// Timeout: a dial, write or read passed its deadline.
	Timeout
	// Reset: the peer broke the connection mid-exchange (ECONNRESET,
	// EPIPE, or EOF before the response was complete).
	Reset
	// Other: everything else, such as a malformed response.
	Other
	numErrorKinds
)

// String returns the kind's name as used in reports: refused, timeout,
// reset or other.
func (k ErrorKind) String() string {
	switch k {
	case Refused:
		return "refused"
	case Timeout:
		return "timeout"
	case Reset:
		return "reset"
	default:
		return "other"
	}
}

// Classify returns the kind a request error is counted under.
func Classify(err error) ErrorKind {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return Refused
	case errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return Timeout
	case errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, io.EOF):
		return Reset
	default:
		return Other
	}
}

// ErrorCounts holds failed requests by kind, with the first error message
// seen of each kind so a report can say what actually happened.
type ErrorCounts struct {
	Counts [numErrorKinds]int64
	First  [numErrorKinds]string
}

// add counts err under its kind.
func (e *ErrorCounts) add(err error) {
	k := Classify(err)
	e.Counts[k]++
	if e.First[k] == "" {
		e.First[k] = err.Error()
	}
}

// merge adds o's counts to e, keeping e's first messages.
func (e *ErrorCounts) merge(o *ErrorCounts) {
	for k := range e.Counts {
		e.Counts[k] += o.Counts[k]
		if e.First[k] == "" {
			e.First[k] = o.First[k]
		}
	}
}

// Total returns the number of failed requests of every kind.
func (e *ErrorCounts) Total() int64 {
	var n int64
	for _, c := range e.Counts {
		n += c
	}
	return n
}

// Of returns the number of failed requests of kind k.
func (e *ErrorCounts) Of(k ErrorKind) int64 { return e.Counts[k] }

// Kinds lists every ErrorKind in report order.
func Kinds() []ErrorKind { return []ErrorKind{Refused, Timeout, Reset, Other} }
