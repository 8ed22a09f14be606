package postgres

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// writeDirectory stores what a sync learned of l's organisation in the
// caller's transaction: every listed project and key is inserted or gets its
// latest name (ids are the identity), rows no longer listed stay (their old
// usage keeps its name), and the connection records the parts its key was
// refused. Parts that were refused are not touched. A nil d changes nothing.
// Rows take their user and provider from the connection's row, never from
// the lease value, like the usage rows: a lease altered in memory cannot
// put names on another user's dashboard.
func writeDirectory(ctx context.Context, tx *sqlx.Tx, l tokka.Lease, d *tokka.Directory) error {
	if d == nil {
		return nil
	}
	if len(d.Projects) > 0 {
		ids, kinds, names, archived := make([]string, 0, len(d.Projects)), []string{}, []string{}, []bool{}
		for _, p := range d.Projects {
			ids, kinds, names, archived = append(ids, p.ID), append(kinds, p.Kind), append(names, p.Name), append(archived, p.Archived)
		}
		if _, err := tx.ExecContext(ctx, `
			INSERT INTO tokka.directory_projects (connection_id, team_id, provider, id, kind, name, archived)
			SELECT c.id, c.team_id, c.provider, p.id, p.kind, p.name, p.archived
			FROM tokka.connections c, unnest($2::text[], $3::text[], $4::text[], $5::bool[]) AS p (id, kind, name, archived)
			WHERE c.id = $1
			ON CONFLICT (connection_id, id) DO UPDATE SET
				kind = excluded.kind, name = excluded.name, archived = excluded.archived, seen_at = now()`,
			l.ConnectionID, pq.Array(ids), pq.Array(kinds), pq.Array(names), pq.BoolArray(archived)); err != nil {
			return domainError(err, "store directory projects")
		}
	}
	if err := flagNewAdminKeys(ctx, tx, l, d.Keys); err != nil {
		return err
	}
	if len(d.Keys) > 0 {
		n := len(d.Keys)
		ids, admin, names, hints := make([]string, 0, n), make([]bool, 0, n), make([]string, 0, n), make([]string, 0, n)
		created, used, status, projects := make([]sql.NullString, 0, n), make([]sql.NullString, 0, n), make([]string, 0, n), make([]string, 0, n)
		for _, k := range d.Keys {
			ids, admin, names, hints = append(ids, k.ID), append(admin, k.Admin), append(names, k.Name), append(hints, k.Hint)
			status, projects = append(status, k.Status), append(projects, k.ProjectID)
			created, used = append(created, timeText(k.CreatedAt)), append(used, timeText(k.LastUsedAt))
		}
		if _, err := tx.ExecContext(ctx, `
			INSERT INTO tokka.directory_keys (connection_id, team_id, provider, id, admin, name, redacted_hint,
				created_at, last_used_at, status, project_id)
			SELECT c.id, c.team_id, c.provider, k.id, k.admin, k.name, k.hint, k.created_at::timestamptz,
				k.last_used_at::timestamptz, k.status, k.project_id
			FROM tokka.connections c,
				unnest($2::text[], $3::bool[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[])
				AS k (id, admin, name, hint, created_at, last_used_at, status, project_id)
			WHERE c.id = $1
			ON CONFLICT (connection_id, id) DO UPDATE SET
				admin = excluded.admin, name = excluded.name, redacted_hint = excluded.redacted_hint,
				created_at = excluded.created_at, last_used_at = excluded.last_used_at, status = excluded.status,
				project_id = excluded.project_id, seen_at = now()`,
			l.ConnectionID, pq.Array(ids), pq.BoolArray(admin), pq.Array(names), pq.Array(hints),
			pq.Array(created), pq.Array(used), pq.Array(status), pq.Array(projects)); err != nil {
			return domainError(err, "store directory keys")
		}
	}
	unavailable := d.Unavailable.Strings()
	slices.Sort(unavailable)
	_, err := tx.ExecContext(ctx, `UPDATE tokka.connections SET directory_unavailable = $2 WHERE id = $1`,
		l.ConnectionID, pq.Array(slices.Compact(unavailable)))
	return domainError(err, "store directory availability")
}

// flagNewAdminKeys raises, in the caller's transaction and before keys are
// stored, a critical key_access alert for every admin key in keys that the
// connection's stored directory does not have yet: someone gave a key full
// control of the organisation since the previous sync. A connection with no
// admin key stored yet (its first directory sync, or a key that could not
// read the admin keys until now) raises nothing: everything would be "new".
// The dedup key holds the key's id, so each key is reported once.
func flagNewAdminKeys(ctx context.Context, tx *sqlx.Tx, l tokka.Lease, keys []tokka.DirectoryKey) error {
	var known []string
	if err := tx.SelectContext(ctx, &known,
		`SELECT id FROM tokka.directory_keys WHERE connection_id = $1 AND admin`, l.ConnectionID); err != nil {
		return domainError(err, "known admin keys")
	}
	if len(known) == 0 {
		return nil
	}
	for _, k := range keys {
		if !k.Admin || slices.Contains(known, k.ID) {
			continue
		}
		detail, _ := json.Marshal(map[string]any{"reason": "new_admin_key", "key_id": k.ID, "key_name": k.Name,
			"key_hint": k.Hint, "key_kind": tokka.KeyKindAdmin, "key_created_at": timeText(k.CreatedAt).String})
		conn := l.ConnectionID
		if _, err := insertAlert(ctx, tx, tokka.Alert{
			TeamID: l.TeamID, Kind: tokka.AlertKeyAccess, Severity: "critical", ConnectionID: &conn,
			DedupKey: "admin_key_new:" + conn + ":" + k.ID,
			Title: fmt.Sprintf("A new admin key %q (%s) appeared in the organisation: if nobody you know created it, revoke it now",
				k.Name, k.Hint),
			Detail: detail,
		}); err != nil {
			return err
		}
	}
	return nil
}

// timeText is t as RFC 3339 text for an array parameter, NULL for nil.
func timeText(t *time.Time) sql.NullString {
	if t == nil {
		return sql.NullString{}
	}
	return sql.NullString{String: t.UTC().Format(time.RFC3339Nano), Valid: true}
}

// directoryNames returns the names the caller's directory holds for the
// given project and key ids, read in tx under the reader's row-level
// security. An id listed by several connections takes the most recently
// seen name.
func directoryNames(ctx context.Context, tx *sqlx.Tx, userID string, projectIDs, keyIDs []string) (projects map[string]dirName, keys map[string]string, err error) {
	projects, keys = map[string]dirName{}, map[string]string{}
	if len(projectIDs) > 0 {
		var rows []struct {
			ID   string `db:"id"`
			Kind string `db:"kind"`
			Name string `db:"name"`
		}
		if err := tx.SelectContext(ctx, &rows, `
			SELECT DISTINCT ON (id) id, kind, name FROM tokka.directory_projects
			WHERE team_id = $1 AND id = ANY($2::text[])
			ORDER BY id, seen_at DESC`, userID, pq.Array(projectIDs)); err != nil {
			return nil, nil, domainError(err, "directory names")
		}
		for _, r := range rows {
			projects[r.ID] = dirName{kind: r.Kind, name: r.Name}
		}
	}
	if len(keyIDs) > 0 {
		var rows []struct {
			ID   string `db:"id"`
			Name string `db:"name"`
		}
		if err := tx.SelectContext(ctx, &rows, `
			SELECT DISTINCT ON (id) id, name FROM tokka.directory_keys
			WHERE team_id = $1 AND id = ANY($2::text[])
			ORDER BY id, seen_at DESC`, userID, pq.Array(keyIDs)); err != nil {
			return nil, nil, domainError(err, "directory names")
		}
		for _, r := range rows {
			keys[r.ID] = r.Name
		}
	}
	return projects, keys, nil
}

// dirName is a project's or workspace's name and which of the two it is.
type dirName struct{ kind, name string }

// namesOf returns the Names of a row with the given project and key ids
// ("" when the row is not grouped by them).
func namesOf(projects map[string]dirName, keys map[string]string, projectID, keyID string) tokka.Names {
	var n tokka.Names
	if p, ok := projects[projectID]; ok && projectID != "" {
		name := p.name
		if p.kind == tokka.KindWorkspace {
			n.WorkspaceName = &name
		} else {
			n.ProjectName = &name
		}
	}
	if k, ok := keys[keyID]; ok && keyID != "" {
		n.APIKeyName = &k
	}
	return n
}
