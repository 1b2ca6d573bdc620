package httpapi_test

import (
	"testing"

	"github.com/civicbase/civicbase/internal/pgtest"
)

// TestMain removes the throwaway Postgres cluster that the webhook tests
// start, and checks that no test leaked a goroutine.
func TestMain(m *testing.M) { pgtest.Main(m) }
