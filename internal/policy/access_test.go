package policy_test

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/policy"
)

func TestAccessRules(t *testing.T) {
	principals := map[string]policy.Principal{
		"operator":      policy.OperatorPrincipal(),
		"admin":         {AccountID: "acc_1", UserID: "usr_admin", Admin: true},
		"owner":         {AccountID: "acc_1", UserID: "usr_owner"},
		"member":        {AccountID: "acc_1", UserID: "usr_other"},
		"secret token":  {AccountID: "acc_1", TokenID: "tok_sk", Admin: true},
		"foreign admin": {AccountID: "acc_2", UserID: "usr_x", Admin: true},
		"no one":        {AccountID: "acc_1"},
	}
	tokens := map[string]*policy.Token{
		"owned":   {ID: "tok_1", AccountID: "acc_1", UserID: "usr_owner", Kind: policy.Publishable},
		"unowned": {ID: "tok_2", AccountID: "acc_1", Kind: policy.Publishable},
		"secret":  {ID: "tok_sk", AccountID: "acc_1", Kind: policy.Secret},
	}
	actions := map[string]func(policy.Principal, *policy.Token) bool{
		"see": policy.CanSee, "manage": policy.CanManage, "toggle": policy.CanToggle, "delete": policy.CanDelete,
		"reveal": policy.CanReveal,
	}
	// want[principal][token] lists the actions allowed; the rest are denied.
	all := []string{"see", "manage", "toggle", "delete"}
	want := map[string]map[string][]string{
		"operator": {"owned": append(all, "reveal"), "unowned": append(all, "reveal"), "secret": all},
		"admin": {"owned": {"see", "toggle", "delete", "reveal"}, "unowned": append(all, "reveal"),
			"secret": all},
		"owner":  {"owned": append(all, "reveal")},
		"member": {},
		"secret token": {"owned": {"see", "toggle", "delete", "reveal"}, "unowned": append(all, "reveal"),
			"secret": all},
		"foreign admin": {},
		"no one":        {},
	}
	for pn, p := range principals {
		for tn, tok := range tokens {
			for an, can := range actions {
				allowed := false
				for _, a := range want[pn][tn] {
					allowed = allowed || a == an
				}
				if got := can(p, tok); got != allowed {
					t.Errorf("%s may %s the %s token: got %v, want %v", pn, an, tn, got, allowed)
				}
			}
		}
	}
}

func TestAccountRules(t *testing.T) {
	admin := policy.Principal{AccountID: "acc_1", UserID: "usr_a", Admin: true}
	member := policy.Principal{AccountID: "acc_1", UserID: "usr_m"}
	secretKey := policy.Principal{AccountID: "acc_1", TokenID: "tok_sk", Admin: true}
	op := policy.OperatorPrincipal()
	for name, tc := range map[string]struct {
		got, want bool
	}{
		"admin creates secret":            {policy.CanCreate(admin, "acc_1", policy.Secret), true},
		"member creates secret":           {policy.CanCreate(member, "acc_1", policy.Secret), false},
		"member creates publishable":      {policy.CanCreate(member, "acc_1", policy.Publishable), true},
		"admin creates in another":        {policy.CanCreate(admin, "acc_2", policy.Publishable), false},
		"operator creates anywhere":       {policy.CanCreate(op, "acc_9", policy.Secret), true},
		"only the operator names owners":  {policy.CanOwn(admin), false},
		"operator names owners":           {policy.CanOwn(op), true},
		"member sees users":               {policy.CanSeeUsers(member, "acc_1"), true},
		"member sees another's users":     {policy.CanSeeUsers(member, "acc_2"), false},
		"member manages users":            {policy.CanManageUsers(member, "acc_1"), false},
		"admin manages users":             {policy.CanManageUsers(admin, "acc_1"), true},
		"admin manages another's users":   {policy.CanManageUsers(admin, "acc_2"), false},
		"admin deletes the secret token":  {policy.CanDeleteSecret(admin), false},
		"operator deletes a secret token": {policy.CanDeleteSecret(op), true},
		"user sets own password":          {policy.CanSetPassword(member, &policy.User{ID: "usr_m", AccountID: "acc_1"}), true},
		"admin sets another's password":   {policy.CanSetPassword(admin, &policy.User{ID: "usr_m", AccountID: "acc_1"}), false},
		"secret token sets a password":    {policy.CanSetPassword(secretKey, &policy.User{AccountID: "acc_1"}), false},
		"admin changes a role":            {policy.CanChangeRole(admin, &policy.User{ID: "usr_m", AccountID: "acc_1"}), true},
		"secret token changes a role":     {policy.CanChangeRole(secretKey, &policy.User{ID: "usr_m", AccountID: "acc_1"}), true},
		"member changes a role":           {policy.CanChangeRole(member, &policy.User{ID: "usr_m", AccountID: "acc_1"}), false},
		"admin changes another's role":    {policy.CanChangeRole(admin, &policy.User{ID: "usr_x", AccountID: "acc_2"}), false},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: got %v, want %v", name, tc.got, tc.want)
		}
	}
}

func TestCheckLastAdmin(t *testing.T) {
	admin := &policy.User{ID: "usr_a", AccountID: "acc_1", Role: policy.RoleAdmin}
	member := &policy.User{ID: "usr_m", AccountID: "acc_1", Role: policy.RoleMember}
	for name, tc := range map[string]struct {
		u      *policy.User
		role   policy.Role
		admins int
		want   error
	}{
		"demote the last admin":     {admin, policy.RoleMember, 1, policy.ErrLastAdmin},
		"demote one of two admins":  {admin, policy.RoleMember, 2, nil},
		"keep the last admin admin": {admin, policy.RoleAdmin, 1, nil},
		"promote a member":          {member, policy.RoleAdmin, 1, nil},
		"member stays member":       {member, policy.RoleMember, 1, nil},
	} {
		if got := policy.CheckLastAdmin(tc.u, tc.role, tc.admins); got != tc.want {
			t.Errorf("%s: got %v, want %v", name, got, tc.want)
		}
	}
}

func TestCheckRemoveUser(t *testing.T) {
	admin := &policy.User{ID: "usr_a", AccountID: "acc_1", Role: policy.RoleAdmin}
	member := &policy.User{ID: "usr_m", AccountID: "acc_1", Role: policy.RoleMember}
	for name, tc := range map[string]struct {
		u      *policy.User
		admins int
		want   error
	}{
		"remove the last admin":    {admin, 1, policy.ErrLastAdminRemoval},
		"remove one of two admins": {admin, 2, nil},
		"remove a member":          {member, 1, nil},
	} {
		if got := policy.CheckRemoveUser(tc.u, tc.admins); got != tc.want {
			t.Errorf("%s: got %v, want %v", name, got, tc.want)
		}
	}
}

func TestCheckLockout(t *testing.T) {
	now := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	past := now.Add(-time.Hour)
	sk := func(change func(*policy.Token)) *policy.Token {
		tok := policy.NewToken("acc_1", policy.Secret)
		tok.ID = "tok_sk"
		change(tok)
		return tok
	}
	req := &policy.Request{IP: netip.MustParseAddr("192.0.2.7"), Method: "PATCH", Path: "/v1/tokens/tok_sk"}
	self := policy.Principal{AccountID: "acc_1", TokenID: "tok_sk", Admin: true, Request: req}
	user := policy.Principal{AccountID: "acc_1", UserID: "usr_a", Admin: true}
	for name, tc := range map[string]struct {
		p          policy.Principal
		tok        *policy.Token
		wasEnabled bool
		wantCode   policy.Code
		wantField  string
	}{
		"disable":                {user, sk(func(t *policy.Token) { t.Enabled = false }), true, policy.EConflict, ""},
		"operator disables":      {policy.OperatorPrincipal(), sk(func(t *policy.Token) { t.Enabled = false }), true, "", ""},
		"already disabled":       {user, sk(func(t *policy.Token) { t.Enabled = false }), false, "", ""},
		"passed expiry":          {user, sk(func(t *policy.Token) { t.ExpiresAt = &past }), true, policy.EConflict, "expires_at"},
		"domains":                {user, sk(func(t *policy.Token) { t.Domains = []string{"example.com"} }), true, policy.EConflict, "allowed_domains"},
		"publishable is free":    {user, &policy.Token{ID: "tok_p", AccountID: "acc_1", Kind: policy.Publishable}, true, "", ""},
		"self outside ip list":   {self, sk(func(t *policy.Token) { t.IPs = []string{"198.51.100.0/24"} }), true, policy.EConflict, ""},
		"self inside ip list":    {self, sk(func(t *policy.Token) { t.IPs = []string{"192.0.2.0/24"} }), true, "", ""},
		"user changes ip list":   {user, sk(func(t *policy.Token) { t.IPs = []string{"198.51.100.0/24"} }), true, "", ""},
		"self switches on signs": {self, sk(func(t *policy.Token) { t.Signed = true }), true, "", ""},
	} {
		err := policy.CheckLockout(tc.p, tc.tok, tc.wasEnabled, now, policy.EvalOptions{})
		if got := policy.ErrorCode(err); got != tc.wantCode {
			t.Errorf("%s: got code %q (%v), want %q", name, got, err, tc.wantCode)
			continue
		}
		if pe, ok := errors.AsType[*policy.Error](err); ok && pe.Field != tc.wantField {
			t.Errorf("%s: got field %q, want %q", name, pe.Field, tc.wantField)
		}
	}
}

func TestStillManagesUsers(t *testing.T) {
	account := []policy.User{{ID: "usr_admin", Role: policy.RoleAdmin}, {ID: "usr_member", Role: policy.RoleMember}}
	for _, tc := range []struct {
		name string
		p    policy.Principal
		want bool
	}{
		{"operator", policy.OperatorPrincipal(), true},
		{"the account's secret token", policy.Principal{AccountID: "acc", TokenID: "tok", Admin: true}, true},
		{"an admin who still is one", policy.Principal{AccountID: "acc", UserID: "usr_admin", Admin: true}, true},
		{"an admin demoted since the request began", policy.Principal{AccountID: "acc", UserID: "usr_member", Admin: true}, false},
		{"an admin removed since the request began", policy.Principal{AccountID: "acc", UserID: "usr_gone", Admin: true}, false},
		{"a member", policy.Principal{AccountID: "acc", UserID: "usr_member"}, false},
		{"a token that is no admin", policy.Principal{AccountID: "acc", TokenID: "tok"}, false},
	} {
		if got := policy.StillManagesUsers(tc.p, account); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
	if n := policy.Admins(account); n != 1 {
		t.Errorf("Admins: got %d, want 1", n)
	}
}
