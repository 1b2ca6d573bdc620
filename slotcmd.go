package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/civicbase/civicbase/cdc"
	"github.com/civicbase/civicbase/config"
	"github.com/civicbase/civicbase/sql"
	"github.com/civicbase/civicbase/store"
)

// recreateSlotCommand accepts the loss of a dropped or invalidated slot: it
// records the gap and drops the invalidated slot. The service then creates
// a new slot and sends resync_required to consumers behind the gap.
func recreateSlotCommand(ctx context.Context, log *slog.Logger, out io.Writer, getenv func(string) string) error {
	dsn := getenv("DATABASE_URL")
	if dsn == "" {
		return errors.New("DATABASE_URL is not set; set it to the watched database")
	}
	slot, err := configuredSlot(getenv)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	pool, err := openPool(ctx, dsn)
	if err != nil {
		return err
	}
	defer pool.Close()
	// The gaps table may be newer than the running service's schema.
	if err := sql.Migrate(ctx, pool, log); err != nil {
		return err
	}

	gap, err := cdc.AcceptSlotLoss(ctx, pool, store.New(pool), slot)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "Accepted the loss of slot %s (%s) as gap %d.\n", slot, gap.Detail, gap.ID)
	fmt.Fprintf(out, "Changes committed after LSN %s that were not stored are lost", gap.LostAfter)
	if gap.LastID != "" {
		fmt.Fprintf(out, "; the newest stored event is %s", gap.LastID)
	}
	fmt.Fprintf(out, ".\nA running service creates the new slot within %s, or the next one to start does.\n"+
		"WebSocket sessions and GET /events readers whose position is before the gap then get resync_required.\n",
		cdc.SlotRecheckInterval)
	return nil
}

// configuredSlot returns the slot name of the YAML file in
// CIVICBASE_CONFIG, or the default when the variable is not set.
func configuredSlot(getenv func(string) string) (string, error) {
	path := getenv("CIVICBASE_CONFIG")
	if path == "" {
		return config.Config{}.WithDefaults().Slot, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading CIVICBASE_CONFIG: %w", err)
	}
	cfg, err := config.Parse(data)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return cfg.Slot, nil
}
