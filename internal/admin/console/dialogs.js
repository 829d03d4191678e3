// Modal dialogs: focus moves into a dialog when it opens and back to what
// opened it when it closes; Escape cancels.

/**
 * Opens a <dialog> modally and focuses `focus` (or the dialog's heading).
 * When it closes, focus returns to `opener`, or, if the opener has left
 * the page, to `fallback`.
 */
export function openDialog(dialog, { opener, focus, fallback } = {}) {
  const back = opener || document.activeElement;
  const onClose = () => {
    dialog.removeEventListener('close', onClose);
    const now = document.activeElement;
    if (now && now !== document.body && !dialog.contains(now)) {
      // Focus is already where it belongs: back on the opener (browsers
      // restore it), or on what the action showed next.
      return;
    }
    const target = findAgain(back) || fallback;
    if (target && typeof target.focus === 'function') {
      target.focus();
    }
  };
  dialog.addEventListener('close', onClose);
  dialog.showModal();
  const first = focus || dialog.querySelector('[autofocus]') || dialog.querySelector('h2');
  if (first) {
    first.focus();
  }
}

/**
 * Returns the element, or, if it has left the page (its list was redrawn),
 * the element that took its place: the one with the same data-focus-key.
 */
export function findAgain(el) {
  if (!el) {
    return null;
  }
  if (el.isConnected) {
    return el;
  }
  const key = el.dataset && el.dataset.focusKey;
  return key ? document.querySelector(`[data-focus-key="${CSS.escape(key)}"]`) : null;
}

/**
 * Asks for confirmation. Resolves true for the OK button, false for
 * Cancel or Escape.
 */
export function confirmDialog({ title, text, ok, cancel = 'Cancel', danger = false, opener, fallback }) {
  const dialog = document.getElementById('confirm-dialog');
  const okButton = document.getElementById('confirm-ok');
  const cancelButton = document.getElementById('confirm-cancel');
  document.getElementById('confirm-title').textContent = title;
  document.getElementById('confirm-text').textContent = text;
  okButton.textContent = ok;
  cancelButton.textContent = cancel;
  okButton.classList.toggle('danger', danger);
  okButton.classList.toggle('primary', !danger);
  return new Promise((resolve) => {
    let answer = false;
    const done = (value) => () => {
      answer = value;
      dialog.close();
    };
    const onOK = done(true);
    const onCancel = done(false);
    const onClose = () => {
      okButton.removeEventListener('click', onOK);
      cancelButton.removeEventListener('click', onCancel);
      dialog.removeEventListener('close', onClose);
      resolve(answer);
    };
    okButton.addEventListener('click', onOK);
    cancelButton.addEventListener('click', onCancel);
    dialog.addEventListener('close', onClose);
    // A destructive action starts on Cancel, so Enter does no harm.
    openDialog(dialog, { opener, fallback, focus: danger ? cancelButton : okButton });
  });
}
