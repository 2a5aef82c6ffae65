package steps

import "errors"

func asExit(err error, target any) bool { return errors.As(err, target) }
