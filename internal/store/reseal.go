package store

import (
	"context"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/tollgate/tollgate/internal/policy"
)

// sealedColumn is the tokens' column that holds a kind of sealed bytes.
func sealedColumn(k policy.SealedKind) string {
	if k == policy.SealedValue {
		return "sealed_value"
	}
	return "signing_secret"
}

type sealedRow struct {
	ID            string `db:"id"`
	SigningSecret []byte `db:"signing_secret"`
	SealedValue   []byte `db:"sealed_value"`
}

func (r sealedRow) sealed() []policy.Sealed {
	var out []policy.Sealed
	if r.SigningSecret != nil {
		out = append(out, policy.Sealed{TokenID: r.ID, Kind: policy.SealedSigningSecret, Bytes: r.SigningSecret})
	}
	if r.SealedValue != nil {
		out = append(out, policy.Sealed{TokenID: r.ID, Kind: policy.SealedValue, Bytes: r.SealedValue})
	}
	return out
}

// SealedAfter returns the sealed values (signing secrets and kept values)
// of up to limit tokens whose ids follow after ("" starts at the first),
// in id order, and the id to continue after: "" once there are no more.
// It reads without locking: Reseal writes only what has not changed since.
func (db *DB) SealedAfter(ctx context.Context, after string, limit int) ([]policy.Sealed, string, error) {
	if limit < 1 {
		return nil, "", policy.Errorf(policy.EInvalid, "a batch must hold at least 1 token, not %d", limit)
	}
	var rows []sealedRow
	err := sqlx.SelectContext(ctx, db.db, &rows, db.db.Rebind(`SELECT id, signing_secret, sealed_value FROM tokens
		WHERE id > ? AND (signing_secret IS NOT NULL OR sealed_value IS NOT NULL) ORDER BY id LIMIT ?`), after, limit)
	if err != nil {
		return nil, "", wrapErr("read sealed values", err)
	}
	var out []policy.Sealed
	for _, r := range rows {
		out = append(out, r.sealed()...)
	}
	next := ""
	if len(rows) == limit {
		next = rows[len(rows)-1].ID
	}
	return out, next, nil
}

// SealedOf returns the sealed values of one token: none when it has none,
// or is gone.
func (db *DB) SealedOf(ctx context.Context, id string) ([]policy.Sealed, error) {
	var rows []sealedRow
	err := sqlx.SelectContext(ctx, db.db, &rows, db.db.Rebind(`SELECT id, signing_secret, sealed_value FROM tokens WHERE id = ?`), id)
	if err != nil {
		return nil, wrapErr("read sealed values of "+id, err)
	}
	var out []policy.Sealed
	for _, r := range rows {
		out = append(out, r.sealed()...)
	}
	return out, nil
}

// Reseal writes each replacement's new bytes in one transaction, each only
// where its column still holds the bytes it was read with (compare and
// set), and reports which it wrote. A token changed since the read (rolled,
// its signing secret rolled or switched off, deleted) keeps what it has:
// an old value is never written back over a new one. Like any change to a
// token, a written signing secret is announced to the replicas (the value
// inside is the same, so a cached policy was right all along).
func (db *DB) Reseal(ctx context.Context, rs []policy.Resealed) ([]bool, error) {
	written := make([]bool, len(rs))
	err := db.inTx(ctx, func(tx *sqlx.Tx) error {
		for _, kind := range []policy.SealedKind{policy.SealedSigningSecret, policy.SealedValue} {
			col := sealedColumn(kind)
			var idx []int
			for i, r := range rs {
				if r.Kind == kind {
					idx = append(idx, i)
				}
			}
			if len(idx) == 0 {
				continue
			}
			swap := db.swapEach
			if db.dialect == Postgres {
				swap = db.swapAll
			}
			if err := swap(ctx, tx, col, rs, idx, written); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return written, nil
}

// swapEach compares and sets rs[i] for each i of idx, a statement each:
// SQLite runs them in process, so a statement costs no round trip.
func (db *DB) swapEach(ctx context.Context, tx *sqlx.Tx, col string, rs []policy.Resealed, idx []int, written []bool) error {
	for _, i := range idx {
		r := rs[i]
		res, err := tx.ExecContext(ctx, tx.Rebind(`UPDATE tokens SET `+col+` = ? WHERE id = ? AND `+col+` = ?`), r.New, r.TokenID, r.Bytes)
		if err != nil {
			return wrapErr("reseal "+r.TokenID, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return wrapErr("reseal "+r.TokenID, err)
		}
		written[i] = n == 1
	}
	return nil
}

// swapAll compares and sets every rs[i] of idx in one statement, so that
// a batch costs Postgres one round trip, not one a value.
func (db *DB) swapAll(ctx context.Context, tx *sqlx.Tx, col string, rs []policy.Resealed, idx []int, written []bool) error {
	ids, olds, news := make([]string, len(idx)), make([][]byte, len(idx)), make([][]byte, len(idx))
	at := make(map[string]int, len(idx))
	for j, i := range idx {
		ids[j], olds[j], news[j] = rs[i].TokenID, rs[i].Bytes, rs[i].New
		at[rs[i].TokenID] = i
	}
	var done []string
	err := sqlx.SelectContext(ctx, tx, &done, `UPDATE tokens AS t SET `+col+` = v.new
		FROM unnest($1::text[], $2::bytea[], $3::bytea[]) AS v(id, old, new)
		WHERE t.id = v.id AND t.`+col+` = v.old RETURNING t.id`, pq.Array(ids), pq.Array(olds), pq.Array(news))
	if err != nil {
		return wrapErr("reseal a batch", err)
	}
	for _, id := range done {
		written[at[id]] = true
	}
	return nil
}
