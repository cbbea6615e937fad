package datasource

import (
	"context"
	"fmt"
	"time"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/storage"
	"github.com/keygate/keygate/internal/storage/model"
	"github.com/keygate/keygate/internal/storage/postgres"
	"github.com/keygate/keygate/internal/storage/sqlite"
)

// Open builds the Store for a data source and checks that it answers, so a
// reload with an unreachable database fails before it is swapped in. It
// does not migrate. For sqlite, parent directories are created and
// MaxConnections bounds the read pool (writes always use one connection);
// for postgres it bounds the pool (default 10). Errors name the data
// source, never its URL. Every call gets the data source's timeout as its
// deadline, and the failures that are the database's (it hung, the
// connection failed, it refuses writes) wrap storage.ErrUnavailable.
func Open(ctx context.Context, ds *config.DataSource) (model.Store, error) {
	switch ds.Type {
	case config.DataSourceSQLite:
		s, err := sqlite.Open(ctx, ds.Path, sqlite.Options{Readers: ds.MaxConnections})
		if err != nil {
			return nil, fmt.Errorf("data source %s: %w", ds.Name, err)
		}
		return storage.WithDeadline(s, timeout(ds)), nil
	case config.DataSourcePostgres:
		if ds.URL.IsZero() {
			return nil, fmt.Errorf("data source %s: url is required", ds.Name)
		}
		s, err := postgres.Open(ctx, ds.URL.Reveal(), ds.MaxConnections)
		if err != nil {
			return nil, fmt.Errorf("data source %s: %w", ds.Name, err)
		}
		return storage.WithDeadline(s, timeout(ds)), nil
	default:
		return nil, fmt.Errorf("data source %s: unknown type %q (want %s or %s)",
			ds.Name, ds.Type, config.DataSourceSQLite, config.DataSourcePostgres)
	}
}

// timeout is the data source's call timeout, defaulted for data sources
// built in code rather than loaded.
func timeout(ds *config.DataSource) time.Duration {
	if ds.Timeout > 0 {
		return ds.Timeout.D()
	}
	return config.DefaultDataSourceTimeout
}
