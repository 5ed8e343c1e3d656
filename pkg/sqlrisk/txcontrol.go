package sqlrisk

import "strings"

// EndsTransaction names the first command of sql that ends the transaction it
// runs in ("COMMIT", "END", "ROLLBACK", "ABORT", "PREPARE TRANSACTION"), or ""
// when none does. goose runs a migration without -- +goose NO TRANSACTION in one
// transaction: such a command commits (or undoes) the statements before it on
// its own, so a failure after it can no longer be undone, and a retry would run
// them twice. ROLLBACK TO SAVEPOINT keeps the transaction and is not one. A
// statement with an unclosed quote is looked at as one command.
func EndsTransaction(sql string) string {
	pieces, ok := splitStatements(sql)
	if !ok {
		pieces = []string{sql}
	}
	for _, p := range pieces {
		words := strings.Fields(strings.ToUpper(stripLeadingComments(p)))
		if len(words) == 0 {
			continue
		}
		switch words[0] {
		case "COMMIT", "END", "ABORT":
			return words[0]
		case "ROLLBACK":
			if len(words) > 1 && words[1] == "TO" {
				continue
			}
			return "ROLLBACK"
		case "PREPARE":
			if len(words) > 1 && words[1] == "TRANSACTION" {
				return "PREPARE TRANSACTION"
			}
		}
	}
	return ""
}
