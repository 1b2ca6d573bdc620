package canon

// maxArrayIndex is the largest array index in ECMAScript, 2^32 - 2. Keys that
// spell such an index in canonical decimal form come first in property order.
const maxArrayIndex = 1<<32 - 2

// arrayIndex reports whether key is the canonical decimal form of an
// ECMAScript array index (0 to 2^32-2, no sign and no leading zeros), and
// returns the index.
func arrayIndex[T string | []byte](key T) (uint32, bool) {
	if len(key) == 0 || len(key) > 10 || (key[0] == '0' && len(key) > 1) {
		return 0, false
	}
	var v uint64
	for i := range len(key) {
		c := key[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
	}
	if v > maxArrayIndex {
		return 0, false
	}
	return uint32(v), true
}

// positionsThreshold is the member count above which Object finds earlier
// members with the same key through a map instead of a linear scan.
const positionsThreshold = 16

// Object is a JSON object under construction whose member values are already
// canonical JSON. AppendTo writes the members in JavaScript property order:
// array-index keys such as "2" and "10" first in ascending numeric order, then
// the other keys in insertion order. A key added twice keeps its first
// position and its last value, as assigning a property twice does in
// JavaScript. The zero value is an empty object ready for use, and Reset
// empties it for reuse.
type Object struct {
	// members contains the array-index members first, sorted by index,
	// followed by the other members in insertion order.
	members []member
	indexed int
	// positions maps a non-index key to its position after the array-index
	// members. It is built once the object passes positionsThreshold members.
	positions map[string]int
}

type member struct {
	key   string
	index uint32
	raw   []byte
}

// Add adds a member whose value raw is canonical JSON text, for example the
// output of AppendString, AppendNumber or Canonicalize. Object keeps raw
// without copying it, so the caller must not modify raw before AppendTo.
func (o *Object) Add(key string, raw []byte) {
	if index, ok := arrayIndex(key); ok {
		o.addIndexed(key, index, raw)
		return
	}
	if pos, ok := o.findNamed(key); ok {
		o.members[o.indexed+pos].raw = raw
		return
	}
	o.members = append(o.members, member{key: key, raw: raw})
	named := len(o.members) - o.indexed
	if o.positions != nil {
		o.positions[key] = named - 1
	} else if named > positionsThreshold {
		o.positions = make(map[string]int, 2*named)
		for i, m := range o.members[o.indexed:] {
			o.positions[m.key] = i
		}
	}
}

// addIndexed inserts or replaces a member whose key is an array index,
// keeping the array-index members sorted.
func (o *Object) addIndexed(key string, index uint32, raw []byte) {
	lo, hi := 0, o.indexed
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if o.members[mid].index < index {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo < o.indexed && o.members[lo].index == index {
		o.members[lo].raw = raw
		return
	}
	o.members = append(o.members, member{})
	copy(o.members[lo+1:], o.members[lo:])
	o.members[lo] = member{key: key, index: index, raw: raw}
	o.indexed++
}

// findNamed returns the position of a non-index key among the non-index
// members.
func (o *Object) findNamed(key string) (int, bool) {
	if o.positions != nil {
		pos, ok := o.positions[key]
		return pos, ok
	}
	for i, m := range o.members[o.indexed:] {
		if m.key == key {
			return i, true
		}
	}
	return 0, false
}

// Len returns the number of distinct keys added.
func (o *Object) Len() int { return len(o.members) }

// Reset removes all members and keeps the member slice for reuse.
func (o *Object) Reset() {
	clear(o.members)
	o.members = o.members[:0]
	o.indexed = 0
	o.positions = nil
}

// AppendTo appends the object as JSON text in JavaScript property order.
func (o *Object) AppendTo(dst []byte) []byte {
	dst = append(dst, '{')
	for i, m := range o.members {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = AppendString(dst, m.key)
		dst = append(dst, ':')
		dst = append(dst, m.raw...)
	}
	return append(dst, '}')
}
