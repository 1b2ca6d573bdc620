package pgtest

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) { Main(m) }

func TestNewDBHasLogicalWAL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, NewDB(t))
	require.NoError(t, err)
	defer conn.Close(ctx)

	var level string
	require.NoError(t, conn.QueryRow(ctx, "SHOW wal_level").Scan(&level))
	require.Equal(t, "logical", level)
}
