// Package canon writes JSON exactly as JavaScript's JSON.stringify does, so a
// receiver that re-serializes a parsed payload gets the same bytes.
//
// It differs from encoding/json in four ways that matter for signed payloads.
// It does not escape <, > and &. It writes U+2028 and U+2029 literally. It
// writes numbers in ECMAScript Number::toString form, with -0 as 0. It orders
// object members as JavaScript orders properties, with array-index keys first
// in ascending numeric order and all other keys in insertion order.
package canon
