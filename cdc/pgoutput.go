package cdc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/jackc/pglogrepl"
)

// Tuple column kinds in pgoutput's TupleData.
const (
	kindNull  = 'n'
	kindToast = 'u' // unchanged TOAST value: the content is not sent
	kindText  = 't'
)

// tupleColumn is one column of a row as pgoutput sends it. data points into
// the received message and is valid only until the next receive.
type tupleColumn struct {
	kind byte
	data []byte
}

// rowChange is a decoded insert, update or delete message. Decoding these
// by hand, without copying column data, halves the allocations per change
// compared with pglogrepl.Parse, and every length is bounds-checked, so a
// malformed message is an error rather than a panic.
type rowChange struct {
	op         byte // 'I', 'U' or 'D'
	relationID uint32
	oldKind    byte // 'K' (key columns only), 'O' (whole old row) or 0
	old, new   []tupleColumn
}

var errShortMessage = errors.New("message ends early")

// decodeRowChange decodes an insert, update or delete message into rc,
// reusing its column slices.
func decodeRowChange(src []byte, rc *rowChange) error {
	if len(src) < 6 {
		return fmt.Errorf("decoding %q message: %w", src[:min(len(src), 1)], errShortMessage)
	}
	rc.op, rc.relationID, rc.oldKind = src[0], binary.BigEndian.Uint32(src[1:5]), 0
	rc.old, rc.new = rc.old[:0], rc.new[:0]
	rest := src[5:]
	var err error
	if rc.op != 'I' && (rest[0] == 'K' || rest[0] == 'O') {
		rc.oldKind = rest[0]
		if rc.old, rest, err = decodeTuple(rest[1:], rc.old); err != nil {
			return fmt.Errorf("decoding old row of relation %d: %w", rc.relationID, err)
		}
	}
	if rc.op == 'D' {
		if rc.oldKind == 0 {
			return fmt.Errorf("decoding delete on relation %d: no old row or key", rc.relationID)
		}
		return nil
	}
	if len(rest) == 0 || rest[0] != 'N' {
		return fmt.Errorf("decoding %c message on relation %d: new row marker missing", rc.op, rc.relationID)
	}
	if rc.new, _, err = decodeTuple(rest[1:], rc.new); err != nil {
		return fmt.Errorf("decoding new row of relation %d: %w", rc.relationID, err)
	}
	return nil
}

// decodeTuple decodes a TupleData into dst and returns the bytes after it.
func decodeTuple(src []byte, dst []tupleColumn) ([]tupleColumn, []byte, error) {
	if len(src) < 2 {
		return dst, nil, errShortMessage
	}
	n := int(binary.BigEndian.Uint16(src))
	src = src[2:]
	for i := 0; i < n; i++ {
		if len(src) < 1 {
			return dst, nil, errShortMessage
		}
		col := tupleColumn{kind: src[0]}
		src = src[1:]
		switch col.kind {
		case kindNull, kindToast:
		case kindText, 'b':
			if len(src) < 4 {
				return dst, nil, errShortMessage
			}
			size := binary.BigEndian.Uint32(src)
			src = src[4:]
			if uint64(size) > uint64(len(src)) {
				return dst, nil, fmt.Errorf("column %d claims %d bytes but %d remain: %w", i, size, len(src), errShortMessage)
			}
			col.data, src = src[:size:size], src[size:]
		default:
			return dst, nil, fmt.Errorf("column %d has unknown kind %q", i, col.kind)
		}
		dst = append(dst, col)
	}
	return dst, src, nil
}

// parseMessage parses a pgoutput message other than an insert, update or
// delete, which decodeRowChange reads. pglogrepl.Parse (version
// 0.0.0-20251213150135) reads past the end of a malformed Relation, Truncate
// or logical decoding message and panics, and it allocates the relation ids
// that a Truncate message claims before reading them. So the lengths of
// Relation and Truncate messages are checked here first. Logical decoding
// messages ('M') are returned as nil, because the session does not request
// them and ignores them.
func parseMessage(src []byte) (pglogrepl.Message, error) {
	if len(src) == 0 {
		return nil, fmt.Errorf("decoding empty message: %w", errShortMessage)
	}
	var err error
	switch src[0] {
	case 'I', 'U', 'D':
		// pglogrepl decodes their tuples without bounds checks.
		return nil, fmt.Errorf("decoding %q message: row changes are decoded by decodeRowChange", src[:1])
	case 'M':
		return nil, nil
	case 'R':
		err = checkRelation(src[1:])
	case 'T':
		err = checkTruncate(src[1:])
	}
	if err != nil {
		return nil, fmt.Errorf("decoding %q message: %w", src[:1], err)
	}
	return pglogrepl.Parse(src)
}

// checkRelation checks the lengths in a Relation message body: relation id,
// namespace, name, replica identity, column count, and per column its flags,
// name, type id and type modifier.
func checkRelation(src []byte) error {
	r := lengthReader{src: src}
	r.skip(4)
	r.skipString()
	r.skipString()
	r.skip(1)
	n := r.uint16()
	for range n {
		r.skip(1)
		r.skipString()
		r.skip(8)
	}
	return r.err
}

// checkTruncate checks that a Truncate message body holds the relation ids
// it counts.
func checkTruncate(src []byte) error {
	r := lengthReader{src: src}
	n := r.uint32()
	r.skip(1)
	if r.err == nil && uint64(n)*4 > uint64(len(r.src)) {
		return fmt.Errorf("truncate claims %d relations but %d bytes remain: %w", n, len(r.src), errShortMessage)
	}
	return r.err
}

// lengthReader walks a message's fields. After the first field that does
// not fit, err is set and every later call does nothing.
type lengthReader struct {
	src []byte
	err error
}

// next returns the next n bytes, or nil when fewer remain.
func (r *lengthReader) next(n int) []byte {
	if r.err != nil {
		return nil
	}
	if len(r.src) < n {
		r.err = errShortMessage
		return nil
	}
	b := r.src[:n]
	r.src = r.src[n:]
	return b
}

func (r *lengthReader) skip(n int) { r.next(n) }

func (r *lengthReader) skipString() {
	if r.err != nil {
		return
	}
	end := bytes.IndexByte(r.src, 0)
	if end < 0 {
		r.err = fmt.Errorf("string without a terminating NUL: %w", errShortMessage)
		return
	}
	r.src = r.src[end+1:]
}

func (r *lengthReader) uint16() uint16 {
	if b := r.next(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (r *lengthReader) uint32() uint32 {
	if b := r.next(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}
