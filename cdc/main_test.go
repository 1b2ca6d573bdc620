package cdc

import (
	"testing"

	"github.com/civicbase/civicbase/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }
