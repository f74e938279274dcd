"""
gunicorn's settings for every command that serves the hub: `gunicorn config.wsgi -c config/gunicorn.py …`
(the systemd unit, the container image and compose, `make run`, the test and bench harnesses). Options given
on the command line win; what varies per deployment (the address, the number of workers, where the access
log goes) is given there.
"""

# gunicorn's default access log format writes the HTTP Basic user name (%(u)s) and the request line with its
# query string (%(r)s): a client that sends its API key as a Basic user name or as `?api_key=` would have it
# in the log, though the API refuses both (issue 14, finding 6). This one is the combined format without
# them — the path without its query (%(U)s), no user, no referer (a full URL too) — plus the time taken.
access_log_format = '%(h)s - - %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s "-" "%(a)s" %(M)sms'

# No control socket: gunicorn would put one in the user's home (~/.gunicorn/), which the service user lacks
# and every checkout on a development machine would share.
control_socket_disable = True
