package tokka

import "time"

// Role is what a member may do in a team. Each role may do everything the
// roles below it may.
type Role string

// The roles, highest first.
const (
	// RoleOwner manages the members and may delete the team.
	RoleOwner Role = "owner"
	// RoleAdmin adds, replaces and deletes keys and manages budgets,
	// webhooks and alerts.
	RoleAdmin Role = "admin"
	// RoleViewer reads usage, the summary, exports, alerts, budgets and
	// the audit log.
	RoleViewer Role = "viewer"
)

// rank orders the roles; an unknown role ranks below every known one.
func (r Role) rank() int {
	switch r {
	case RoleOwner:
		return 3
	case RoleAdmin:
		return 2
	case RoleViewer:
		return 1
	}
	return 0
}

// AtLeast reports whether r is min or a higher role.
func (r Role) AtLeast(min Role) bool { return r.rank() > 0 && r.rank() >= min.rank() }

// Valid reports whether r is one of the three roles.
func (r Role) Valid() bool { return r.rank() > 0 }

// Team is a group of people who share connections, usage, budgets, alerts
// and an audit log. A user's personal team has the user's id.
type Team struct {
	ID        string    `db:"id" json:"id"`
	Name      string    `db:"name" json:"name"`
	Personal  bool      `db:"personal" json:"personal"`
	Role      Role      `db:"role" json:"role"`
	CreatedAt time.Time `db:"created_at" json:"created_at"`
}

// Member is one person's membership of a team.
type Member struct {
	UserID    string    `db:"user_id" json:"user_id"`
	Email     string    `db:"email" json:"email"`
	Role      Role      `db:"role" json:"role"`
	CreatedAt time.Time `db:"created_at" json:"created_at"`
}

// Invitation is an offer to join a team, made to an email address. Its
// token is shown once, to the inviter, and sent by email; only its hash is
// stored.
type Invitation struct {
	ID         string     `db:"id" json:"id"`
	TeamID     string     `db:"team_id" json:"team_id"`
	Email      string     `db:"email" json:"email"`
	Role       Role       `db:"role" json:"role"`
	InvitedBy  string     `db:"invited_by" json:"invited_by"`
	CreatedAt  time.Time  `db:"created_at" json:"created_at"`
	ExpiresAt  time.Time  `db:"expires_at" json:"expires_at"`
	AcceptedAt *time.Time `db:"accepted_at" json:"accepted_at"`
	RevokedAt  *time.Time `db:"revoked_at" json:"revoked_at"`
	// Token is set only in the answer to the inviter, once.
	Token string `db:"-" json:"token,omitempty"`
}

// InvitationMail is an invitation whose token the syncer is to mail: the
// token is sealed to the syncer's key, bound to TeamID, ID and
// InvitationBinding.
type InvitationMail struct {
	ID          string    `db:"id"`
	TeamID      string    `db:"team_id"`
	TeamName    string    `db:"team_name"`
	Email       string    `db:"email"`
	Role        Role      `db:"role"`
	ExpiresAt   time.Time `db:"expires_at"`
	TokenSealed string    `db:"token_sealed"`
}

// InvitationBinding stands where a sealed invitation token's binding names
// a provider, so no invitation blob ever opens as a provider key.
const InvitationBinding Provider = "invitation"

// ErrNoInvitation answers every token that accepts nothing: unknown, used,
// revoked, expired, malformed, or made out to another address. They are
// one error on purpose: a token's holder learns nothing about which.
var ErrNoInvitation = Errorf(CodeNotFound,
	"no open invitation for your email address has this token (it may have been used, revoked or expired)")

// Team audit actions, appended by the database's team functions.
const (
	ActionTeamCreated        = "team.created"
	ActionTeamRenamed        = "team.renamed"
	ActionTeamDeleted        = "team.deleted"
	ActionMemberRoleChanged  = "member.role_changed"
	ActionMemberRemoved      = "member.removed"
	ActionInvitationCreated  = "invitation.created"
	ActionInvitationRevoked  = "invitation.revoked"
	ActionInvitationAccepted = "invitation.accepted"
)
