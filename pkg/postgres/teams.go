package postgres

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// Teams. Every change goes through the database's team functions
// (migration 00022), which check the caller's role from the transaction's
// claims, keep the last owner, and append to the team's audit chain; these
// methods only call them and turn their outcomes into domain errors. actor
// is the api's api:<request id>.

const teamColumns = `t.id, t.name, t.personal_of IS NOT NULL AS personal, m.role, t.created_at`

// TeamRole returns u's role in team, or tokka.ErrNotFound when u is not a
// member (indistinguishable from a team that does not exist). A user is
// always the owner of their personal team, whose id is their own.
func (d *DB) TeamRole(ctx context.Context, u tokka.User, team string) (tokka.Role, error) {
	if team == u.ID {
		return tokka.RoleOwner, nil
	}
	var role tokka.Role
	err := d.asReader(ctx, u, func(tx *sqlx.Tx) error {
		return domainError(tx.GetContext(ctx, &role,
			`SELECT role FROM tokka.team_members WHERE team_id = $1 AND user_id = $2`, team, u.ID), "team")
	})
	return role, err
}

// ListTeamsPage returns up to limit of the teams u belongs to that come
// after after (nil: from the first), oldest first. The personal team is
// made on this first use if it does not exist yet.
func (d *DB) ListTeamsPage(ctx context.Context, u tokka.User, after *tokka.CreatedKey, limit int) ([]tokka.Team, error) {
	teams := []tokka.Team{}
	at, id := keysetArgs(after)
	err := d.asUser(ctx, u, func(tx *sqlx.Tx) error {
		if _, err := tx.ExecContext(ctx, `SELECT tokka.ensure_personal_team()`); err != nil {
			return domainError(err, "team")
		}
		return domainError(tx.SelectContext(ctx, &teams, `
			SELECT `+teamColumns+`
			FROM tokka.teams t JOIN tokka.team_members m ON m.team_id = t.id AND m.user_id = $1
			WHERE $2::timestamptz IS NULL OR (t.created_at, t.id) > ($2::timestamptz, $3::uuid)
			ORDER BY t.created_at, t.id LIMIT $4`, u.ID, at, id, limit), "teams")
	})
	return teams, err
}

// GetTeam returns one of u's teams, or tokka.ErrNotFound.
func (d *DB) GetTeam(ctx context.Context, u tokka.User, team string) (tokka.Team, error) {
	var t tokka.Team
	err := d.asUser(ctx, u, func(tx *sqlx.Tx) error {
		if err := ensurePersonal(ctx, tx, u, team); err != nil {
			return err
		}
		return getTeam(ctx, tx, u, team, &t)
	})
	return t, err
}

func getTeam(ctx context.Context, tx *sqlx.Tx, u tokka.User, team string, t *tokka.Team) error {
	return domainError(tx.GetContext(ctx, t, `
		SELECT `+teamColumns+`
		FROM tokka.teams t JOIN tokka.team_members m ON m.team_id = t.id AND m.user_id = $2
		WHERE t.id = $1`, team, u.ID), "team")
}

// ensurePersonal makes u's personal team's rows when team is it.
func ensurePersonal(ctx context.Context, tx *sqlx.Tx, u tokka.User, team string) error {
	if team != u.ID {
		return nil
	}
	_, err := tx.ExecContext(ctx, `SELECT tokka.ensure_personal_team()`)
	return domainError(err, "team")
}

// CreateTeam makes a team named name with u as its only owner.
func (d *DB) CreateTeam(ctx context.Context, u tokka.User, name, actor string) (tokka.Team, error) {
	var t tokka.Team
	err := d.asUser(ctx, u, func(tx *sqlx.Tx) error {
		var id string
		if err := tx.GetContext(ctx, &id, `SELECT tokka.create_team($1, $2)`, name, actor); err != nil {
			return domainError(err, "team")
		}
		return getTeam(ctx, tx, u, id, &t)
	})
	return t, err
}

// RenameTeam renames a team u owns; tokka.ErrNotFound when u does not own
// it (a member who is not an owner is refused by the api before this).
func (d *DB) RenameTeam(ctx context.Context, u tokka.User, team, name, actor string) (tokka.Team, error) {
	var t tokka.Team
	err := d.asUser(ctx, u, func(tx *sqlx.Tx) error {
		var ok bool
		if err := tx.GetContext(ctx, &ok, `SELECT tokka.rename_team($1, $2, $3)`, team, name, actor); err != nil {
			return domainError(err, "team")
		}
		if !ok {
			return tokka.ErrNotFound
		}
		return getTeam(ctx, tx, u, team, &t)
	})
	return t, err
}

// DeleteTeam deletes a team u owns. A personal team and a team that still
// holds connections (delete them first, each with its own audit event) are
// a CodeConflict.
func (d *DB) DeleteTeam(ctx context.Context, u tokka.User, team, actor string) error {
	return d.asUser(ctx, u, func(tx *sqlx.Tx) error {
		var outcome string
		if err := tx.GetContext(ctx, &outcome, `SELECT tokka.delete_team($1, $2)`, team, actor); err != nil {
			return domainError(err, "team")
		}
		switch outcome {
		case "deleted":
			return nil
		case "not_found":
			return tokka.ErrNotFound
		case "personal":
			return tokka.Errorf(tokka.CodeConflict, "a personal team cannot be deleted")
		case "has_connections":
			return tokka.Errorf(tokka.CodeConflict, "the team still has connections; delete them first")
		}
		return fmt.Errorf("postgres: delete team: unexpected outcome %q", outcome)
	})
}

// ListMembersPage returns up to limit of the members of one of u's teams
// that come after after (nil: from the first), in the order they joined.
func (d *DB) ListMembersPage(ctx context.Context, u tokka.User, team string, after *tokka.CreatedKey, limit int) ([]tokka.Member, error) {
	members := []tokka.Member{}
	at, id := keysetArgs(after)
	err := d.asUser(ctx, u, func(tx *sqlx.Tx) error {
		if err := ensurePersonal(ctx, tx, u, team); err != nil {
			return err
		}
		return domainError(tx.SelectContext(ctx, &members, `
			SELECT user_id, email, role, created_at FROM tokka.team_members
			WHERE team_id = $1 AND ($2::timestamptz IS NULL OR (created_at, user_id) > ($2::timestamptz, $3::uuid))
			ORDER BY created_at, user_id LIMIT $4`, team, at, id, limit), "members")
	})
	return members, err
}

// Member returns one member of one of u's teams, or tokka.ErrNotFound.
func (d *DB) Member(ctx context.Context, u tokka.User, team, member string) (tokka.Member, error) {
	var m tokka.Member
	err := d.asReader(ctx, u, func(tx *sqlx.Tx) error {
		return domainError(tx.GetContext(ctx, &m, `
			SELECT user_id, email, role, created_at FROM tokka.team_members WHERE team_id = $1 AND user_id = $2`,
			team, member), "member")
	})
	return m, err
}

// ChangeMember sets member's role in team (role nil: removes them). Only
// owners change others; anyone may remove themselves. The last owner, and
// the founder of a personal team, stay owners: a CodeConflict.
func (d *DB) ChangeMember(ctx context.Context, u tokka.User, team, member string, role *tokka.Role, actor string) error {
	return d.asUser(ctx, u, func(tx *sqlx.Tx) error {
		var outcome string
		if err := tx.GetContext(ctx, &outcome, `SELECT tokka.change_member($1, $2, $3, $4)`,
			team, member, role, actor); err != nil {
			return domainError(err, "member")
		}
		switch outcome {
		case "changed", "unchanged":
			return nil
		case "not_found":
			return tokka.ErrNotFound
		case "forbidden":
			return tokka.Errorf(tokka.CodeForbidden, "only an owner of the team may change its members")
		case "last_owner":
			return tokka.Errorf(tokka.CodeConflict, "a team keeps at least one owner, and a personal team its founder: make someone else an owner first")
		}
		return fmt.Errorf("postgres: change member: unexpected outcome %q", outcome)
	})
}

// CreateInvitation records inv (its id, team, email and role), whose token
// hashes to tokenHash and is sealed for the syncer as tokenSealed, valid for
// ttl. Only admins and owners invite, and only owners invite owners:
// otherwise a CodeForbidden error.
func (d *DB) CreateInvitation(ctx context.Context, u tokka.User, inv tokka.Invitation, tokenHash []byte, tokenSealed string, ttl time.Duration, actor string) (tokka.Invitation, error) {
	var out tokka.Invitation
	err := d.asUser(ctx, u, func(tx *sqlx.Tx) error {
		var expires *time.Time
		if err := tx.GetContext(ctx, &expires, `SELECT tokka.create_invitation($1, $2, $3, $4, $5, $6, $7, $8)`,
			inv.ID, inv.TeamID, inv.Email, inv.Role, tokenHash, sql.NullString{String: tokenSealed, Valid: tokenSealed != ""},
			int(ttl.Seconds()), actor); err != nil {
			return domainError(err, "invitation")
		}
		if expires == nil {
			return tokka.Errorf(tokka.CodeForbidden, "your role in this team does not allow inviting as %s", inv.Role)
		}
		return domainError(tx.GetContext(ctx, &out, `SELECT `+invitationColumns+` FROM tokka.team_invitations WHERE id = $1`,
			inv.ID), "invitation")
	})
	return out, err
}

const invitationColumns = `id, team_id, email, role, invited_by, created_at, expires_at, accepted_at, revoked_at`

// ClaimInvitationMails takes up to n invitations whose token is waiting to
// be mailed, as the syncer, for claimFor (another syncer skips them
// meanwhile), and counts the attempt. It first clears the sealed token of
// every invitation that no longer needs it: used, revoked, expired, or
// tried maxAttempts times.
func (d *DB) ClaimInvitationMails(ctx context.Context, n int, claimFor time.Duration, maxAttempts int) ([]tokka.InvitationMail, error) {
	var out []tokka.InvitationMail
	err := d.asSyncer(ctx, func(tx *sqlx.Tx) error {
		if _, err := tx.ExecContext(ctx, `
			UPDATE tokka.team_invitations SET token_sealed = NULL
			WHERE token_sealed IS NOT NULL
			  AND (accepted_at IS NOT NULL OR revoked_at IS NOT NULL OR expires_at <= now() OR mail_attempts >= $1)`,
			maxAttempts); err != nil {
			return domainError(err, "invitations")
		}
		return domainError(tx.SelectContext(ctx, &out, `
			UPDATE tokka.team_invitations i
			SET mail_attempts = i.mail_attempts + 1, mail_claimed_until = now() + make_interval(secs => $2)
			FROM tokka.teams t
			WHERE t.id = i.team_id AND i.id IN (
				SELECT id FROM tokka.team_invitations
				WHERE token_sealed IS NOT NULL AND mailed_at IS NULL
				  AND (mail_claimed_until IS NULL OR mail_claimed_until < now())
				ORDER BY created_at LIMIT $1 FOR UPDATE SKIP LOCKED)
			RETURNING i.id, i.team_id, t.name AS team_name, i.email, i.role, i.expires_at, i.token_sealed`,
			n, claimFor.Seconds()), "invitations")
	})
	return out, err
}

// FinishInvitationMail records how mailing invitation id went: sent, the
// sealed token is cleared; otherwise reason is kept and the claim expires
// so a later pass tries again.
func (d *DB) FinishInvitationMail(ctx context.Context, id string, sent bool, reason string) error {
	return d.asSyncer(ctx, func(tx *sqlx.Tx) error {
		var err error
		if sent {
			_, err = tx.ExecContext(ctx, `UPDATE tokka.team_invitations
				SET mailed_at = now(), token_sealed = NULL, mail_error = NULL, mail_claimed_until = NULL WHERE id = $1`, id)
		} else {
			_, err = tx.ExecContext(ctx, `UPDATE tokka.team_invitations
				SET mail_error = $2, mail_claimed_until = NULL WHERE id = $1`, id, reason)
		}
		return domainError(err, "invitation")
	})
}

// ListInvitationsPage returns up to limit of a team's invitations that come
// after after (nil: from the first), oldest first; only its admins and
// owners see them.
func (d *DB) ListInvitationsPage(ctx context.Context, u tokka.User, team string, after *tokka.CreatedKey, limit int) ([]tokka.Invitation, error) {
	invs := []tokka.Invitation{}
	at, id := keysetArgs(after)
	err := d.asReader(ctx, u, func(tx *sqlx.Tx) error {
		return domainError(tx.SelectContext(ctx, &invs, `SELECT `+invitationColumns+`
			FROM tokka.team_invitations
			WHERE team_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) > ($2::timestamptz, $3::uuid))
			ORDER BY created_at, id LIMIT $4`, team, at, id, limit), "invitations")
	})
	return invs, err
}

// Invitation returns one of a team's invitations (admins and owners), or
// tokka.ErrNotFound.
func (d *DB) Invitation(ctx context.Context, u tokka.User, team, id string) (tokka.Invitation, error) {
	var inv tokka.Invitation
	err := d.asReader(ctx, u, func(tx *sqlx.Tx) error {
		return domainError(tx.GetContext(ctx, &inv, `SELECT `+invitationColumns+`
			FROM tokka.team_invitations WHERE team_id = $1 AND id = $2`, team, id), "invitation")
	})
	return inv, err
}

// RevokeInvitation revokes an invitation of team not yet accepted, or is
// tokka.ErrNotFound.
func (d *DB) RevokeInvitation(ctx context.Context, u tokka.User, team, id, actor string) error {
	return d.asUser(ctx, u, func(tx *sqlx.Tx) error {
		var ok bool
		if err := tx.GetContext(ctx, &ok, `SELECT tokka.revoke_invitation($1, $2, $3)`, team, id, actor); err != nil {
			return domainError(err, "invitation")
		}
		if !ok {
			return tokka.ErrNotFound
		}
		return nil
	})
}

// AcceptInvitation makes u a member of the team the invitation whose token
// hashes to tokenHash is for, if it is still open and made out to the email
// in u's claims, and returns the team as u now sees it. An unknown, used,
// revoked or expired token, and one made out to another address, are one
// and the same CodeNotFound error: which of them is not told.
func (d *DB) AcceptInvitation(ctx context.Context, u tokka.User, tokenHash []byte, actor string) (tokka.Team, error) {
	var t tokka.Team
	err := d.asUser(ctx, u, func(tx *sqlx.Tx) error {
		var r struct {
			Outcome string  `db:"outcome"`
			TeamID  *string `db:"team_id"`
		}
		if err := tx.GetContext(ctx, &r, `SELECT outcome, team_id FROM tokka.accept_invitation($1, $2)`,
			tokenHash, actor); err != nil {
			return domainError(err, "invitation")
		}
		switch r.Outcome {
		case "accepted":
			return getTeam(ctx, tx, u, *r.TeamID, &t)
		case "not_found", "wrong_email":
			return tokka.ErrNoInvitation
		}
		return fmt.Errorf("postgres: accept invitation: unexpected outcome %q", r.Outcome)
	})
	return t, err
}
