"""Completion callbacks: a job's final body POSTed, signed, to a URL its submitter gave.

* ``destinations``: which URLs and addresses a callback may go to (CALLBACK_ALLOWED_HOSTS,
  no private addresses unless allowed), checked at submit and again at delivery;
* ``signing``: the ``X-Signature`` header (HMAC-SHA256 over a timestamp and the body);
* ``delivery``: one HTTP POST to an address that was checked, no redirects, bounded;
* ``models``: the callback of a job and each of its delivery attempts;
* ``services``: registering a callback, making it due when its job ends, delivering it
  (from a background task, through the task engine), recovering lost deliveries;
* ``selectors``: a job's callback as its owner sees it.
"""
