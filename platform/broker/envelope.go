package broker

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// maxShortString is AMQP's limit on a short string: the envelope's id, type
// and correlation id travel as message properties, which are short strings.
const maxShortString = 255

// ErrInvalidEnvelope is wrapped by every error DecodeEnvelope and
// Envelope.Validate return.
var ErrInvalidEnvelope = errors.New("invalid envelope")

// Envelope is the JSON body of every event on audiomill.events.
type Envelope struct {
	// ID is unique per message; it is also the AMQP message id.
	ID string `json:"id"`
	// Type names the event ("video.uploaded", "audio.ready", …).
	Type string `json:"type"`
	// OccurredAt is when the event happened.
	OccurredAt time.Time `json:"occurred_at"`
	// JobID is the job the event is about, if any.
	JobID string `json:"job_id,omitempty"`
	// CorrelationID is the request id of the request that caused the event.
	CorrelationID string `json:"correlation_id,omitempty"`
	// Payload is the event's own data, compact JSON (nil when absent).
	Payload json.RawMessage `json:"payload,omitempty"`
}

// envelopeFields are the JSON keys an envelope may carry, matched exactly
// (encoding/json alone would also accept "ID" or "Occurred_At").
var envelopeFields = []string{"id", "type", "occurred_at", "job_id", "correlation_id", "payload"}

// NewEnvelope returns an envelope of type typ with a fresh random id,
// OccurredAt set to now (UTC) and payload encoded as JSON. A payload that is
// already JSON can be passed as json.RawMessage.
func NewEnvelope(typ, jobID, correlationID string, payload any) (Envelope, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(payload); err != nil {
		return Envelope{}, fmt.Errorf("envelope %s: encode payload: %w", typ, err)
	}
	raw := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	env := Envelope{
		ID:            NewID(),
		Type:          typ,
		OccurredAt:    time.Now().UTC(),
		JobID:         jobID,
		CorrelationID: correlationID,
		Payload:       normalizePayload(raw),
	}
	if err := env.Validate(); err != nil {
		return Envelope{}, err
	}
	return env, nil
}

// NewID returns a random message id: 32 hex characters from crypto/rand.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b[:])
}

// Validate reports whether e can be published and read back: id, type and
// occurred_at are required, and the strings that travel as AMQP properties
// fit in a short string. Its errors wrap ErrInvalidEnvelope.
func (e Envelope) Validate() error {
	var problems []string
	switch {
	case e.ID == "":
		problems = append(problems, "id is required")
	case len(e.ID) > maxShortString:
		problems = append(problems, fmt.Sprintf("id is longer than %d bytes", maxShortString))
	}
	switch {
	case e.Type == "":
		problems = append(problems, "type is required")
	case len(e.Type) > maxShortString:
		problems = append(problems, fmt.Sprintf("type is longer than %d bytes", maxShortString))
	}
	if e.OccurredAt.IsZero() {
		problems = append(problems, "occurred_at is required")
	} else if _, err := e.OccurredAt.MarshalJSON(); err != nil {
		problems = append(problems, fmt.Sprintf("occurred_at cannot be encoded: %v", err))
	}
	if len(e.CorrelationID) > maxShortString {
		problems = append(problems, fmt.Sprintf("correlation_id is longer than %d bytes", maxShortString))
	}
	if len(e.Payload) > 0 && !json.Valid(e.Payload) {
		problems = append(problems, "payload is not valid JSON")
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalidEnvelope, strings.Join(problems, "; "))
	}
	return nil
}

// DecodeEnvelope parses body strictly: it must be one JSON object whose keys
// are exactly envelope fields (an unknown or differently cased key is an
// error), whose fields have their JSON types, and that passes Validate. The
// payload is kept compact, and a null payload is the same as none. Errors
// wrap ErrInvalidEnvelope and name the offending field.
func DecodeEnvelope(body []byte) (Envelope, error) {
	var fields map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&fields); err != nil {
		return Envelope{}, fmt.Errorf("%w: not a JSON object: %v", ErrInvalidEnvelope, err)
	}
	if fields == nil {
		return Envelope{}, fmt.Errorf("%w: not a JSON object: null", ErrInvalidEnvelope)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Envelope{}, fmt.Errorf("%w: data after the JSON object", ErrInvalidEnvelope)
	}
	var unknown []string
	for k := range fields {
		if !isEnvelopeField(k) {
			unknown = append(unknown, fmt.Sprintf("%q", k))
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return Envelope{}, fmt.Errorf("%w: unknown field(s) %s", ErrInvalidEnvelope, strings.Join(unknown, ", "))
	}

	var env Envelope
	targets := []struct {
		name string
		dst  any
	}{
		{"id", &env.ID},
		{"type", &env.Type},
		{"occurred_at", &env.OccurredAt},
		{"job_id", &env.JobID},
		{"correlation_id", &env.CorrelationID},
	}
	for _, t := range targets {
		raw, ok := fields[t.name]
		if !ok {
			continue
		}
		if err := json.Unmarshal(raw, t.dst); err != nil {
			return Envelope{}, fmt.Errorf("%w: field %s: %v", ErrInvalidEnvelope, t.name, err)
		}
	}
	if raw, ok := fields["payload"]; ok {
		var buf bytes.Buffer
		if err := json.Compact(&buf, raw); err != nil {
			return Envelope{}, fmt.Errorf("%w: field payload: %v", ErrInvalidEnvelope, err)
		}
		env.Payload = normalizePayload(buf.Bytes())
	}
	if err := env.Validate(); err != nil {
		return Envelope{}, err
	}
	return env, nil
}

// Encode returns e as JSON after validating it. The payload is written as
// is, compacted but without HTML escaping, so that Encode and DecodeEnvelope
// round-trip byte for byte.
func (e Envelope) Encode() ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(e); err != nil {
		return nil, fmt.Errorf("encode envelope %s: %w", e.ID, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// DecodePayload unmarshals the payload into v.
func (e Envelope) DecodePayload(v any) error {
	if len(e.Payload) == 0 {
		return fmt.Errorf("envelope %s (%s): no payload", e.ID, e.Type)
	}
	if err := json.Unmarshal(e.Payload, v); err != nil {
		return fmt.Errorf("envelope %s (%s): decode payload: %w", e.ID, e.Type, err)
	}
	return nil
}

func isEnvelopeField(k string) bool {
	for _, f := range envelopeFields {
		if k == f {
			return true
		}
	}
	return false
}

// normalizePayload makes "no payload" one value: nil.
func normalizePayload(raw []byte) json.RawMessage {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	return raw
}
