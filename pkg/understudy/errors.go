// Package understudy holds the domain of a shadow-testing inference server:
// tensors, model signatures, predictions and their comparisons, and the
// interfaces that the adapters (onnx, sqlite, http) implement.
//
// It is the bottom of the module's import graph: every other package may
// import it, and it imports no other package of Understudy's and no
// adapter's library (ONNX Runtime, SQLite, chi, zerolog). Its only outside
// dependencies are small ones its types need: float16 for half-precision
// tensors and gRPC's status codes, to which its error codes map.
package understudy

import (
	"errors"
	"fmt"
	"net/http"

	"google.golang.org/grpc/codes"
)

// Error codes name what kind of failure an error is, so that the HTTP layer
// can map them to statuses in a single table.
const (
	ECONFLICT     = "conflict"
	EINTERNAL     = "internal"
	EINVALID      = "invalid"
	ENOTFOUND     = "not_found"
	ETOOLARGE     = "too_large"
	EUNAVAILABLE  = "unavailable"
	EUNAUTHORIZED = "unauthorized"
	EFORBIDDEN    = "forbidden"
	EMODEL        = "model_failed"
	ETIMEOUT      = "timeout"
)

// Error is a failure whose message is safe to show to the client that caused it.
type Error struct {
	Code    string
	Message string
}

// Error implements the error interface.
func (e *Error) Error() string {
	return fmt.Sprintf("understudy error: code=%s message=%s", e.Code, e.Message)
}

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code string, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, or EINTERNAL
// for anything else, so unknown failures are never mistaken for client faults.
func ErrorCode(err error) string {
	var e *Error
	if err == nil {
		return ""
	} else if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the client-safe message of err; internal errors get a
// generic text because their details belong in the logs only.
func ErrorMessage(err error) string {
	var e *Error
	if err == nil {
		return ""
	} else if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}

// Status is how one error code reads on each transport.
type Status struct {
	HTTP int
	GRPC codes.Code
}

// statuses is the one table from error codes to transport statuses, so that
// a client gets the same meaning from /predict, OIP REST and OIP gRPC.
var statuses = map[string]Status{
	EINVALID:      {http.StatusBadRequest, codes.InvalidArgument},
	EUNAUTHORIZED: {http.StatusUnauthorized, codes.Unauthenticated},
	EFORBIDDEN:    {http.StatusForbidden, codes.PermissionDenied},
	ENOTFOUND:     {http.StatusNotFound, codes.NotFound},
	ECONFLICT:     {http.StatusConflict, codes.FailedPrecondition},
	ETOOLARGE:     {http.StatusRequestEntityTooLarge, codes.ResourceExhausted},
	EMODEL:        {http.StatusUnprocessableEntity, codes.Internal},
	EUNAVAILABLE:  {http.StatusServiceUnavailable, codes.Unavailable},
	ETIMEOUT:      {http.StatusGatewayTimeout, codes.DeadlineExceeded},
	EINTERNAL:     {http.StatusInternalServerError, codes.Internal},
}

// StatusOf returns the transport statuses of err's code; anything without
// a code is internal.
func StatusOf(err error) Status {
	if s, ok := statuses[ErrorCode(err)]; ok {
		return s
	}
	return statuses[EINTERNAL]
}

// MaxRequestIDLen is the longest request id a client may choose.
const MaxRequestIDLen = 128

// CheckRequestID refuses a client's request id that could not be stored and
// echoed unchanged: too long, or holding a control character, which a
// response header would send raw or mangle. what names where the id came
// from, e.g. `"id"`.
func CheckRequestID(id, what string) error {
	if len(id) > MaxRequestIDLen {
		return Errorf(EINVALID, "%s is %d characters; at most %d are allowed", what, len(id), MaxRequestIDLen)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c < 0x20 || c == 0x7f {
			return Errorf(EINVALID, "%s has a control character (byte 0x%02x at %d); an id may hold printable characters only", what, c, i)
		}
	}
	return nil
}
