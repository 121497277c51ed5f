package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
)

// Summary is the body of a 2xx answer.
type Summary struct {
	Accepted   int `json:"accepted"`
	Ignored    int `json:"ignored"`
	Duplicates int `json:"duplicates"`
}

// httpError is a rejection with its status and a message that says what to fix.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func reject(status int, format string, args ...any) error {
	return &httpError{status: status, msg: fmt.Sprintf(format, args...)}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// fail answers an error: its own status for rejections, 503 with Retry-After for anything
// else (the bus did not acknowledge), so the sender retries and nothing is lost. Without an
// acknowledgement the event may or may not be stored (the ack itself can be what was
// lost), so the message says so: a retry is harmless because JetStream de-duplicates the
// event by its id.
func fail(w http.ResponseWriter, err error) int {
	var he *httpError
	if errors.As(err, &he) {
		writeJSON(w, he.status, map[string]string{"error": he.msg})
		return he.status
	}
	w.Header().Set("Retry-After", "5")
	writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "event may not be stored; retry (a retried event is de-duplicated by its id): " + err.Error()})
	return http.StatusServiceUnavailable
}

// mediaType is the request's media type without its parameters ("application/json" of
// "application/json; charset=utf-8"), or "" when the Content-Type is missing or malformed.
func mediaType(req *http.Request) string {
	mt, _, err := mime.ParseMediaType(req.Header.Get("Content-Type"))
	if err != nil {
		return ""
	}
	return mt
}

// readBody enforces the content type and the size limit and returns the whole body.
func readBody(w http.ResponseWriter, req *http.Request, max int64, types ...string) ([]byte, error) {
	if !contains(types, mediaType(req)) {
		return nil, reject(http.StatusUnsupportedMediaType, "content type %q is not accepted here; send one of %s", req.Header.Get("Content-Type"), strings.Join(types, ", "))
	}
	body, err := io.ReadAll(http.MaxBytesReader(serverWriter(w), req.Body, max))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, reject(http.StatusRequestEntityTooLarge, "body is larger than %d bytes (events.maxBodyBytes)", max)
	}
	if err != nil {
		return nil, reject(http.StatusBadRequest, "reading body: %v", err)
	}
	return body, nil
}

// readJSONBody reads an application/json body (readBody) and decodes it into a T
// (decodeJSON); what names the payload in the error.
func readJSONBody[T any](w http.ResponseWriter, req *http.Request, max int64, what string) (T, error) {
	var v T
	body, err := readBody(w, req, max, jsonMediaType)
	if err != nil {
		return v, err
	}
	if err := decodeJSON(body, &v, false); err != nil {
		return v, reject(http.StatusBadRequest, "decoding %s: %v", what, err)
	}
	return v, nil
}

// decodeJSON decodes exactly one JSON value of body into v. Anything after it is an error
// (json.Decoder.More does not see a stray "}" or "]"), so a body is understood whole or
// rejected.
func decodeJSON(body []byte, v any, disallowUnknownFields bool) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	if disallowUnknownFields {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON object")
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
