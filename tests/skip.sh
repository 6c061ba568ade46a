#!/bin/sh
# skip.sh PART WHAT: WHAT cannot run here for want of PART. Prints
# "SKIP: WHAT" and exits 0 or, where AIO_COMPAT_REQUIRE (a comma-separated
# list, see tests/run.sh) names PART, prints "FAIL: WHAT" and exits 1.
case ",${AIO_COMPAT_REQUIRE-}," in
*",$1,"*)
	echo "FAIL: $2, and AIO_COMPAT_REQUIRE lists $1"
	exit 1
	;;
esac
echo "SKIP: $2"
