package httpapi

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/mail"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/tokka-dev/tokka/pkg/seal"
	"github.com/tokka-dev/tokka/pkg/secret"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// TeamStore keeps teams, their members and invitations; *postgres.DB
// implements it. The database checks every role again (migration 00022):
// what the api checks first only spares a refused request its trip.
type TeamStore interface {
	TeamRole(ctx context.Context, u tokka.User, team string) (tokka.Role, error)
	ListTeamsPage(ctx context.Context, u tokka.User, after *tokka.CreatedKey, limit int) ([]tokka.Team, error)
	GetTeam(ctx context.Context, u tokka.User, team string) (tokka.Team, error)
	CreateTeam(ctx context.Context, u tokka.User, name, actor string) (tokka.Team, error)
	RenameTeam(ctx context.Context, u tokka.User, team, name, actor string) (tokka.Team, error)
	DeleteTeam(ctx context.Context, u tokka.User, team, actor string) error
	ListMembersPage(ctx context.Context, u tokka.User, team string, after *tokka.CreatedKey, limit int) ([]tokka.Member, error)
	Member(ctx context.Context, u tokka.User, team, member string) (tokka.Member, error)
	ChangeMember(ctx context.Context, u tokka.User, team, member string, role *tokka.Role, actor string) error
	CreateInvitation(ctx context.Context, u tokka.User, inv tokka.Invitation, tokenHash []byte, tokenSealed string,
		ttl time.Duration, actor string) (tokka.Invitation, error)
	ListInvitationsPage(ctx context.Context, u tokka.User, team string, after *tokka.CreatedKey, limit int) ([]tokka.Invitation, error)
	Invitation(ctx context.Context, u tokka.User, team, id string) (tokka.Invitation, error)
	RevokeInvitation(ctx context.Context, u tokka.User, team, id, actor string) error
	AcceptInvitation(ctx context.Context, u tokka.User, tokenHash []byte, actor string) (tokka.Team, error)
}

// DefaultInvitationTTL is how long an invitation stays open.
const DefaultInvitationTTL = 7 * 24 * time.Hour

var errBadTeamID = &tokka.Error{Code: tokka.CodeInvalid, Field: "team_id", Message: "team_id must be a team's id (a UUID)"}

// queryTeam is the team_id parameter in canonical form, whether it was
// given, and errBadTeamID for one that is not a UUID.
func queryTeam(c echo.Context) (string, bool, error) {
	raw, given := c.QueryParams()["team_id"]
	if !given {
		return "", false, nil
	}
	id, err := parseUUID(raw[0])
	if err != nil {
		return "", true, errBadTeamID
	}
	return id, true, nil
}

// requestedTeam is the team a request names, in the path (the /v1/teams
// routes; one that is not a UUID is unknown, 404) or in team_id (400 when
// malformed), and whether it names one at all.
func requestedTeam(c echo.Context) (string, bool, error) {
	if p := c.Param("team"); p != "" {
		id, err := parseUUID(p)
		if err != nil {
			return "", true, teamNotFound
		}
		return id, true, nil
	}
	return queryTeam(c)
}

// checkTeamID refuses a malformed team before anything is counted or
// looked up.
func checkTeamID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if _, _, err := requestedTeam(c); err != nil {
			return err
		}
		return next(c)
	}
}

// inTeam puts the request in the team it names (a request naming none
// stays in the caller's personal team), once the caller's role there is at
// least need(c). A team the caller is not a member of is 404, like one
// that does not exist.
func (s *Server) inTeam(need func(echo.Context) tokka.Role) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			id, given, err := requestedTeam(c)
			if err != nil {
				return err
			}
			if given {
				if err := s.joinTeam(c, id, need(c)); err != nil {
					return err
				}
			}
			return next(c)
		}
	}
}

// byMethod is the role the routes that take team_id need: any to read,
// admin for every other method.
func byMethod(c echo.Context) tokka.Role {
	if readOnly(c.Request().Method) {
		return tokka.RoleViewer
	}
	return tokka.RoleAdmin
}

// always is a route's one role, whatever its method.
func always(r tokka.Role) func(echo.Context) tokka.Role {
	return func(echo.Context) tokka.Role { return r }
}

var teamNotFound = &tokka.Error{Code: tokka.CodeNotFound, Message: "no such team (or you are not a member of it)"}

// joinTeam looks up the caller's role in team and refuses one below min.
func (s *Server) joinTeam(c echo.Context, team string, min tokka.Role) error {
	u := userOf(c)
	role, err := s.teams.TeamRole(c.Request().Context(), u, team)
	if tokka.ErrorCode(err) == tokka.CodeNotFound {
		return teamNotFound
	}
	if err != nil {
		return err
	}
	if !role.AtLeast(min) {
		return tokka.Errorf(tokka.CodeForbidden, "your role in this team is %s; this needs %s", role, min)
	}
	if team != u.ID {
		u.Team = team
	}
	u.Role = role
	c.Set(ctxUser, u)
	if team != u.ID && !readOnly(c.Request().Method) {
		return s.spendTeam(c)
	}
	return nil
}

func actor(c echo.Context) string { return "api:" + requestID(c) }

func (s *Server) listTeams(c echo.Context) error {
	limit, after, err := createdPage(c, "teams")
	if err != nil {
		return err
	}
	teams, err := s.teams.ListTeamsPage(c.Request().Context(), userOf(c), after, limit+1)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, pageOf(teams, limit, "teams", func(t tokka.Team) []string { return createdKey(t.CreatedAt, t.ID) }))
}

type teamRequest struct {
	Name string `json:"name"`
}

func parseTeamName(c echo.Context) (string, error) {
	var req teamRequest
	if err := decodeStrict(c, &req); err != nil {
		return "", err
	}
	return cleanName("name", req.Name)
}

func (s *Server) createTeam(c echo.Context) error {
	t, err := s.teams.CreateTeam(c.Request().Context(), userOf(c), *prepared[string](c), actor(c))
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderLocation, "/v1/teams/"+t.ID)
	return c.JSON(http.StatusCreated, t)
}

func (s *Server) getTeam(c echo.Context) error {
	t, err := s.teams.GetTeam(c.Request().Context(), userOf(c), userOf(c).TeamID())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, t)
}

func (s *Server) renameTeam(c echo.Context) error {
	u := userOf(c)
	t, err := s.teams.RenameTeam(c.Request().Context(), u, u.TeamID(), *prepared[string](c), actor(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, t)
}

func (s *Server) deleteTeam(c echo.Context) error {
	u := userOf(c)
	if err := s.teams.DeleteTeam(c.Request().Context(), u, u.TeamID(), actor(c)); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) listMembers(c echo.Context) error {
	limit, after, err := createdPage(c, "members")
	if err != nil {
		return err
	}
	u := userOf(c)
	members, err := s.teams.ListMembersPage(c.Request().Context(), u, u.TeamID(), after, limit+1)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, pageOf(members, limit, "members", func(m tokka.Member) []string { return createdKey(m.CreatedAt, m.UserID) }))
}

// memberChange is a checked PATCH or DELETE of /v1/teams/:team/members/:user.
type memberChange struct {
	user string
	role *tokka.Role
}

type memberRequest struct {
	Role tokka.Role `json:"role"`
}

func parseMemberUpdate(c echo.Context) (memberChange, error) {
	user, err := parseUUID(c.Param("user"))
	if err != nil {
		return memberChange{}, tokka.ErrNotFound
	}
	var req memberRequest
	if err := decodeStrict(c, &req); err != nil {
		return memberChange{}, err
	}
	if !req.Role.Valid() {
		return memberChange{}, &tokka.Error{Code: tokka.CodeInvalid, Field: "role",
			Message: `role must be "owner", "admin" or "viewer"`}
	}
	return memberChange{user: user, role: &req.Role}, nil
}

func parseMemberRemoval(c echo.Context) (memberChange, error) {
	user, err := parseUUID(c.Param("user"))
	if err != nil {
		return memberChange{}, tokka.ErrNotFound
	}
	return memberChange{user: user}, nil
}

func (s *Server) changeMember(c echo.Context) error {
	u := userOf(c)
	ch := *prepared[memberChange](c)
	// Owners change anyone; everyone may leave. The database decides the
	// same and keeps the last owner.
	if u.Role != tokka.RoleOwner && !(ch.role == nil && ch.user == u.ID) {
		return tokka.Errorf(tokka.CodeForbidden, "only an owner of the team may change its members")
	}
	if err := s.teams.ChangeMember(c.Request().Context(), u, u.TeamID(), ch.user, ch.role, actor(c)); err != nil {
		return err
	}
	if ch.role == nil {
		return c.NoContent(http.StatusNoContent)
	}
	m, err := s.teams.Member(c.Request().Context(), u, u.TeamID(), ch.user)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, m)
}

// newInvitation is a checked POST /v1/teams/:team/invitations.
type newInvitation struct {
	email string
	role  tokka.Role
}

type invitationRequest struct {
	Email string     `json:"email"`
	Role  tokka.Role `json:"role"`
}

func parseNewInvitation(c echo.Context) (newInvitation, error) {
	var req invitationRequest
	if err := decodeStrict(c, &req); err != nil {
		return newInvitation{}, err
	}
	email := strings.ToLower(strings.TrimSpace(req.Email))
	if a, err := mail.ParseAddress(email); err != nil || a.Address != email || len(email) > 320 {
		return newInvitation{}, &tokka.Error{Code: tokka.CodeInvalid, Field: "email",
			Message: "email must be one plain email address, like ana@example.com"}
	}
	if !req.Role.Valid() {
		return newInvitation{}, &tokka.Error{Code: tokka.CodeInvalid, Field: "role",
			Message: `role must be "owner", "admin" or "viewer"`}
	}
	return newInvitation{email: email, role: req.Role}, nil
}

// invitationTokenPattern is what newInvitationToken makes: 32 random bytes
// in unpadded base64url, prefixed so a leaked one is recognisable.
var invitationTokenPattern = regexp.MustCompile(`^tki_[A-Za-z0-9_-]{43}$`)

func newInvitationToken() (string, []byte) {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	token := "tki_" + base64.RawURLEncoding.EncodeToString(b[:])
	return token, tokenHash(token)
}

func tokenHash(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

func (s *Server) createInvitation(c echo.Context) error {
	u := userOf(c)
	req := *prepared[newInvitation](c)
	if req.role == tokka.RoleOwner && u.Role != tokka.RoleOwner {
		return tokka.Errorf(tokka.CodeForbidden, "only an owner may invite an owner")
	}
	token, hash := newInvitationToken()
	inv := tokka.Invitation{ID: uuid.NewString(), TeamID: u.TeamID(), Email: req.email, Role: req.role}
	// The api sends no email (it talks to nothing but the database and
	// the Auth server): the token goes to the syncer sealed, as keys do,
	// and the syncer mails it when SMTP_URL is set.
	key := secret.FromString(token)
	sealed, err := s.sealer.Seal(key, seal.Binding{TeamID: inv.TeamID, ConnectionID: inv.ID, Provider: tokka.InvitationBinding})
	key.Wipe()
	if err != nil {
		return err
	}
	ttl := s.cfg.InvitationTTL
	if ttl <= 0 {
		ttl = DefaultInvitationTTL
	}
	inv, err = s.teams.CreateInvitation(c.Request().Context(), u, inv, hash, sealed, ttl, actor(c))
	if err != nil {
		return err
	}
	inv.Token = token
	c.Response().Header().Set(echo.HeaderLocation, "/v1/teams/"+inv.TeamID+"/invitations/"+inv.ID)
	return c.JSON(http.StatusCreated, inv)
}

func (s *Server) listInvitations(c echo.Context) error {
	limit, after, err := createdPage(c, "invitations")
	if err != nil {
		return err
	}
	u := userOf(c)
	invs, err := s.teams.ListInvitationsPage(c.Request().Context(), u, u.TeamID(), after, limit+1)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, pageOf(invs, limit, "invitations", func(i tokka.Invitation) []string { return createdKey(i.CreatedAt, i.ID) }))
}

func (s *Server) getInvitation(c echo.Context) error {
	u := userOf(c)
	inv, err := s.teams.Invitation(c.Request().Context(), u, u.TeamID(), *prepared[string](c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, inv)
}

func invitationID(c echo.Context) (string, error) {
	id, err := parseUUID(c.Param("invitation"))
	if err != nil {
		return "", tokka.ErrNotFound
	}
	return id, nil
}

func (s *Server) revokeInvitation(c echo.Context) error {
	u := userOf(c)
	if err := s.teams.RevokeInvitation(c.Request().Context(), u, u.TeamID(), *prepared[string](c), actor(c)); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// invitationToken checks the path's token before anything is looked up;
// a malformed one is simply not found.
func invitationToken(c echo.Context) (string, error) {
	t := c.Param("token")
	if !invitationTokenPattern.MatchString(t) {
		return "", tokka.ErrNoInvitation
	}
	return t, nil
}

// acceptInvitation needs a signed-in user whose email is confirmed: with an
// Auth server, it is asked (as the live-session check asks) and its
// current address must be the token's; without one, the token's
// email_verified claim decides. The database then checks that the
// invitation is open and made out to the token's email.
func (s *Server) acceptInvitation(c echo.Context) error {
	u := userOf(c)
	confirmed := u.EmailVerified
	if s.cfg.Sessions != nil {
		live, err := s.liveSession(c)
		if err != nil {
			return err
		}
		confirmed = live.EmailConfirmed && strings.EqualFold(live.Email, u.Email)
	}
	if !confirmed || u.Email == "" {
		return tokka.Errorf(tokka.CodeForbidden,
			"accepting an invitation needs a confirmed email address; confirm yours, sign in again and retry")
	}
	t, err := s.teams.AcceptInvitation(c.Request().Context(), u, tokenHash(*prepared[string](c)), actor(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, t)
}
