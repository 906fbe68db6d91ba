// GazeX Gateway console: ask before destructive actions (buttons with data-confirm).
document.addEventListener('submit', event => {
  const button = event.submitter;
  const question = button && button.dataset ? button.dataset.confirm : undefined;
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});

// The destination form: show only the fields of the chosen type and authentication. Without this
// script every field is shown and the server uses only those of the chosen type.
const showChosen = form => {
  const type = form.querySelector('input[name=type]:checked');
  const auth = form.querySelector('select[name=auth_type]');
  form.querySelectorAll('[data-destination-type]').forEach(node => {
    node.hidden = Boolean(type) && node.dataset.destinationType !== type.value;
  });
  form.querySelectorAll('[data-auth-type]').forEach(node => {
    node.hidden = Boolean(auth) && node.dataset.authType !== auth.value;
  });
};
document.querySelectorAll('form#add-destination').forEach(form => {
  showChosen(form);
  form.addEventListener('change', () => showChosen(form));
});
