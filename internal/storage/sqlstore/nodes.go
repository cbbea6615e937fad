package sqlstore

import (
	"context"
	"fmt"

	"github.com/keygate/keygate/internal/storage/model"
)

type nodes struct{ s *Store }

const nodeCols = `id, role, zone, binary_version, config_version, config_hash, started_at, heartbeat_at, expires_at, details`

func (n nodes) Heartbeat(ctx context.Context, ns model.NodeStatus) error {
	if err := ns.Validate(); err != nil {
		return err
	}
	d := n.s.d
	details, err := d.Object(ns.Details)
	if err == nil {
		_, err = n.s.w.Exec(ctx, `INSERT INTO nodes (`+nodeCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
		ON CONFLICT (id) DO UPDATE SET role = excluded.role, zone = excluded.zone,
			binary_version = excluded.binary_version, config_version = excluded.config_version,
			config_hash = excluded.config_hash, started_at = excluded.started_at,
			heartbeat_at = excluded.heartbeat_at, expires_at = excluded.expires_at, details = excluded.details`,
			ns.ID, ns.Role, ns.Zone, ns.BinaryVersion, ns.ConfigVersion, ns.ConfigHash, d.Time(ns.StartedAt),
			d.Time(ns.HeartbeatAt), d.Time(ns.ExpiresAt), details)
	}
	return n.s.failed("heartbeat", err)
}

func (n nodes) List(ctx context.Context) ([]model.NodeStatus, error) {
	var out []model.NodeStatus
	d := n.s.d
	err := n.s.r.Query(ctx, func(row Row) error {
		var ns model.NodeStatus
		err := scan(row, &ns.ID, &ns.Role, &ns.Zone, &ns.BinaryVersion, &ns.ConfigVersion, &ns.ConfigHash,
			d.ScanTime(&ns.StartedAt), d.ScanTime(&ns.HeartbeatAt), d.ScanTime(&ns.ExpiresAt), d.ScanObject(&ns.Details))
		out = append(out, ns)
		return err
	}, `SELECT `+nodeCols+` FROM nodes ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	return out, nil
}
