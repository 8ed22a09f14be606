package postgres_test

import (
	"testing"

	"github.com/tokka-dev/tokka/pkg/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }
