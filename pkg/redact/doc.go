// Package redact keeps credentials out of logs, results and error messages.
//
// A Redactor masks passwords inside connection URLs and keyword/value DSNs wherever
// they appear in a text, and every secret registered with Add (the raw value and its
// URL-escaped forms, see Forms), and the password of a URL registered with
// AddURLPassword. Step binaries route their logger and their final error line
// through one Redactor, so a secret that slips into an error chain is still masked.
package redact
