// Package sqltx runs a function in a database/sql transaction: committed
// when it returns nil, rolled back otherwise. PAN-free.
package sqltx

import (
	"context"
	"database/sql"
)

// Run runs fn in a transaction of db.
func Run(ctx context.Context, db *sql.DB, fn func(*sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}
