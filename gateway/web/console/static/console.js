// GazeX Gateway console: ask before destructive actions (buttons with data-confirm).
document.addEventListener('submit', event => {
  const button = event.submitter;
  const question = button && button.dataset ? button.dataset.confirm : undefined;
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});
