// Package cdc reads a Postgres logical replication slot with the pgoutput
// plugin and turns every committed row change into stored events.
//
// The Reader owns one replication connection. It decodes pgoutput messages,
// builds events (generic data.* events plus the configured semantic ones)
// and writes them to the store in batches, one store transaction per batch,
// grouping several source transactions when they are small. The position it
// reports to the slot as flushed is the end LSN of the last source
// transaction whose events are committed in the store, not the LSN merely
// received. A crash at any point therefore replays work instead of losing it.
// Event ids derive from the commit LSN and the change's position in its
// transaction, so a replay produces the same ids and the store skips them.
package cdc
