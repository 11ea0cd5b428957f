"""Send the management checks' HTTP requests from the appliance, in one process.

Reads a JSON list of {path, method, token, want} on stdin (the tokens never reach argv or a log)
and prints one JSON list of {item, status, www_authenticate, content, json, msg}: the shape the
checks in verify_management.yml read, as ansible.builtin.uri's loop gave it. One task instead of
one module run per request: under TCG each module run on the appliance costs about 8 s.
Usage: python3 ask_api.py http://127.0.0.1:8080 < requests.json
"""

import json
import sys
import urllib.error
import urllib.request

opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
answers = []
for item in json.load(sys.stdin):
    method = item.get("method", "GET")
    req = urllib.request.Request(
        sys.argv[1] + item["path"], method=method, data=b"" if method == "POST" else None
    )
    if item["token"]:
        req.add_header("Authorization", "Bearer " + item["token"])
    status, headers, body, msg = -1, {}, b"", ""
    try:
        with opener.open(req, timeout=30) as resp:
            status, headers, body = resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        status, headers, body, msg = exc.code, exc.headers, exc.read(), str(exc.reason)
    except OSError as exc:
        msg = str(exc)
    content = body.decode("utf-8", "replace")
    try:
        parsed = json.loads(content)
    except ValueError:
        parsed = None
    answers.append(
        {
            "item": item,
            "status": status,
            "www_authenticate": headers.get("WWW-Authenticate", "") if headers else "",
            "content": content,
            "json": parsed,
            "msg": msg,
        }
    )
print(json.dumps(answers))
