package canon

import (
	"bytes"
	"cmp"
	"slices"
)

// finishObject rewrites the object written at dst[start:] into JavaScript
// property order when its members ms are not already in that order or repeat
// a key.
func (c *canonicalizer) finishObject(start int, ms []objectMember) {
	for i := range ms {
		ms[i].last = i
	}
	if !c.markDuplicates(ms) && inPropertyOrder(ms) {
		return
	}
	c.rewriteObject(start, ms)
}

// inPropertyOrder reports whether the array-index members of a duplicate-free
// object come first and ascend.
func inPropertyOrder(ms []objectMember) bool {
	named := false
	var prev uint32
	for i, m := range ms {
		if !m.isIndex {
			named = true
			continue
		}
		if named || (i > 0 && m.index <= prev) {
			return false
		}
		prev = m.index
	}
	return true
}

func (c *canonicalizer) key(m objectMember) []byte {
	return c.dst[m.start:m.colon]
}

// markDuplicates marks each member whose key an earlier member already has,
// points the first member with that key to the last one, and reports whether
// any key repeats.
func (c *canonicalizer) markDuplicates(ms []objectMember) bool {
	found := false
	if len(ms) <= positionsThreshold {
		for i := 1; i < len(ms); i++ {
			for j := range i {
				if !ms[j].dup && bytes.Equal(c.key(ms[i]), c.key(ms[j])) {
					ms[j].last, ms[i].dup, found = i, true, true
					break
				}
			}
		}
		return found
	}
	// Large objects: sort positions by key, then by position, so members
	// with the same key are adjacent and the first of each run comes first.
	order := c.order[:0]
	for i := range ms {
		order = append(order, int32(i))
	}
	slices.SortFunc(order, func(a, b int32) int {
		if k := bytes.Compare(c.key(ms[a]), c.key(ms[b])); k != 0 {
			return k
		}
		return cmp.Compare(a, b)
	})
	first := order[0]
	for _, i := range order[1:] {
		if bytes.Equal(c.key(ms[i]), c.key(ms[first])) {
			ms[first].last, ms[i].dup, found = int(i), true, true
		} else {
			first = i
		}
	}
	c.order = order
	return found
}

// rewriteObject replaces the object written at dst[start:] with its members
// in property order, each repeated key once with its last value.
//
// NOTE: an object that needs rewriting is copied once for itself and again
// for every enclosing object that needs rewriting, so deep nesting of such
// objects costs up to maxDepth copies of the innermost ones.
func (c *canonicalizer) rewriteObject(start int, ms []objectMember) {
	order := c.order[:0]
	for i, m := range ms {
		if m.isIndex && !m.dup {
			order = append(order, int32(i))
		}
	}
	slices.SortFunc(order, func(a, b int32) int {
		return cmp.Compare(ms[a].index, ms[b].index)
	})

	for i, m := range ms {
		if !m.isIndex && !m.dup {
			order = append(order, int32(i))
		}
	}
	// Write the new form after the old one, then move it into place, so
	// the spare capacity of dst serves as scratch space.
	end := len(c.dst)
	c.dst = append(c.dst, '{')
	for i, pos := range order {
		if i > 0 {
			c.dst = append(c.dst, ',')
		}
		m := ms[pos]
		v := ms[m.last]
		c.dst = append(c.dst, c.dst[m.start:m.colon+1]...)
		c.dst = append(c.dst, c.dst[v.colon+1:v.end]...)
	}
	c.dst = append(c.dst, '}')

	n := copy(c.dst[start:], c.dst[end:])
	c.dst = c.dst[:start+n]
	c.order = order
}
