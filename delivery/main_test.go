package delivery

import (
	"testing"

	"github.com/civicbase/civicbase/internal/pgtest"
)

// TestMain removes the throwaway Postgres cluster after the tests and fails
// the run when a test leaves a goroutine behind.
func TestMain(m *testing.M) { pgtest.Main(m) }
